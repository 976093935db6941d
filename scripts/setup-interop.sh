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
missing=()
for probe in "${!PKGS[@]}"; do
  if [[ $probe == /* ]]; then [[ -e $probe ]] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing+=("${PKGS[$probe]}")
done
# busybox (the dynamic one) also provides /bin/busybox; the image needs the static build.
if [[ -e /bin/busybox ]] && ! dpkg -s busybox-static >/dev/null 2>&1; then missing+=(busybox-static); fi
((${#missing[@]})) || exit 0

echo "setup-interop: installing ${missing[*]}" >&2
if [[ $(id -u) != 0 ]]; then echo "setup-interop: need root to apt-get install ${missing[*]}" >&2; exit 1; fi
apt-get update -qq >&2
# The containerd package starts no daemon here (no systemd); podman's package drops
# /etc/cni/net.d/87-podman-bridge.conflist, which the suite never reads (its dirs are private).
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
