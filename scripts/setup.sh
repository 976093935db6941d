#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian machine:
# system packages when missing, and the pinned Deno toolchain from npm (tools/deno).
# Safe to run any number of times; prints only what it changes.
set -euo pipefail
cd "$(dirname "$0")/.."

# command-or-file that proves the package is present -> Debian package
declare -A PKGS=(
  [ip]=iproute2
  [iptables]=iptables
  [nft]=nftables
  [ping]=iputils-ping
  [iperf3]=iperf3
  [nsenter]=util-linux
  [strace]=strace
  [conntrack]=conntrack
  [pgrep]=procps
  [curl]=curl
  [openssl]=openssl
  [/usr/lib/cni/host-local]=containernetworking-plugins
  [npm]=npm
)
source scripts/apt_packages.sh
install_missing setup PKGS

want=$(sed -n 's/.*"deno": "\([0-9.]*\)".*/\1/p' tools/deno/package.json)
have=$(tools/bin/deno --version 2>/dev/null | sed -n 's/^deno \([0-9.]*\).*/\1/p' || true)
if [[ $have != "$want" ]]; then
  echo "setup: installing deno $want from npm" >&2
  (cd tools/deno && npm ci --no-audit --no-fund --loglevel=error >&2)
  # The npm package's postinstall links the native binary into node_modules/deno/deno; use the
  # platform package directly so it also works where npm refuses install scripts.
  arch=$(uname -m); case $arch in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; esac
  real=$PWD/tools/deno/node_modules/@deno/linux-$arch-glibc/deno
  [[ -x $real ]] || { echo "setup: no deno binary at $real" >&2; exit 1; }
  mkdir -p tools/bin && ln -sf "$real" tools/bin/deno
  tools/bin/deno --version | head -1 >&2
fi
