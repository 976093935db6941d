#!/usr/bin/env bash
# Installs what the interop suite (tests/integration/interop_test.ts) needs on Debian 12, only
# when missing: containerd + runc (CRI), podman + conmon (CNI backend), busybox-static (the test
# image), golang-go + golang-github-appc-cni-dev (an offline libcni driver).
# Safe to run any number of times; prints only what it changes. Starts no daemon.
set -euo pipefail

# command-or-file that proves the package is present -> Debian package
declare -A PKGS=(
  [containerd]=containerd
  [runc]=runc
  [podman]=podman
  [conmon]=conmon
  [/usr/share/containers/containers.conf]=golang-github-containers-common
  [/bin/busybox]=busybox-static
  [go]=golang-go
  [/usr/share/gocode/src/github.com/containernetworking/cni/libcni]=golang-github-appc-cni-dev
  [/usr/lib/cni/portmap]=containernetworking-plugins
  [nsenter]=util-linux
)
extra=()
# busybox (the dynamic one) also provides /bin/busybox; the image needs the static build.
if [[ -e /bin/busybox ]] && ! dpkg -s busybox-static >/dev/null 2>&1; then extra+=(busybox-static); fi
# The containerd package starts no daemon here (no systemd); podman's package drops
# /etc/cni/net.d/87-podman-bridge.conflist, which the suite never reads (its dirs are private).
source "$(dirname "$0")/apt_packages.sh"
install_missing setup-interop PKGS "${extra[@]}"
