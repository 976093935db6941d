# syntax=docker/dockerfile:1
# mycni image: the node agent (mycni-init, the DaemonSet's process) and the CNI plugin (mycni),
# which the agent copies onto the node's /opt/cni/bin. Build: `docker build -t mycni:dev .`
# (or `bash scripts/kind.sh image`).

# Build stage: the same Deno as tools/deno/package.json (tests/unit/deploy checks they agree).
# Pinned by tag; for a reproducible release also pin the digest, e.g.
#   ARG DENO_IMAGE=denoland/deno:debian-2.9.6@sha256:<digest>
# (`docker buildx imagetools inspect denoland/deno:debian-2.9.6` prints it).
ARG DENO_IMAGE=denoland/deno:debian-2.9.6
# Debian 13; pin the digest the same way for a release.
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${DENO_IMAGE} AS build
WORKDIR /src
# Only what the build reads: scripts/build.sh compiles with --no-config, so deno.json is not used.
COPY scripts/build.sh scripts/eager_functions.ts scripts/
COPY mycni.ts init.ts ./
COPY lib lib
# One source of truth for the build flags: the very script `make build` runs. Here deno compile
# can download its runtime (denort), so both programs come out as self-contained executables.
# MYCNI_BUILD=compile asks for compile-or-fail: scripts/build.sh exits non-zero with deno
# compile's log instead of falling back to a bundle. The check after it is a second guard: a
# bundled script's shebang names this stage's deno, which the final image does not have.
ENV MYCNI_BUILD=compile
RUN DENO="$(command -v deno)" bash scripts/build.sh \
  && for f in bin/mycni bin/mycni-init; do \
       [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] \
         || { echo "$f was bundled, not compiled:" >&2; cat bin/.*.compile.log >&2; exit 1; }; \
     done

# Run stage: only what the agent runs at run time.
#   nftables  `nft`: the agent's table inet mycni (masquerade, NetworkPolicy)
#   iptables  the forward accept chain (hosts whose FORWARD policy is DROP), nft backend (what
#             current kube-proxy and kind use; rules written with iptables-legacy would sit in
#             tables the nft kernel path ignores)
# No iproute2: routes, the VXLAN device, neighbours and FDB entries go over rtnetlink from the
# agent itself (lib/net), as the plugin's links and addresses do.
#
# What the PLUGIN needs on the node: the plugin is not run in this container. The agent copies
# bin/mycni to the node's /opt/cni/bin and the container runtime (containerd, CRI-O) execs it there,
# on the host, once per pod. It speaks rtnetlink itself and execs nothing, so the node needs only
# glibc (deno compile executables link it dynamically, and the plugin's netlink calls go through
# libc.so.6), plus `iptables` for a conflist that sets "ipMasq": true. kind's node images and
# every common distro have both.
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables nftables \
  && update-alternatives --set iptables /usr/sbin/iptables-nft \
  && update-alternatives --set ip6tables /usr/sbin/ip6tables-nft \
  && rm -rf /var/lib/apt/lists/*
# Both binaries in one directory: the agent installs the plugin found next to its own executable.
COPY --from=build /src/bin/mycni /src/bin/mycni-init /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/mycni-init"]
