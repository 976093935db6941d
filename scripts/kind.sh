#!/usr/bin/env bash
# mycni on a local kind cluster, for a machine with Docker, kind and kubectl.
#   bash scripts/kind.sh image|kind-up|kind-load|deploy|kind-test|kind-down|all
# Settings (environment): IMAGE (mycni:dev, the tag deploy/mycni.yaml names), CLUSTER (mycni),
# KIND_CONFIG (deploy/kind/cluster.yaml; deploy/kind/cluster-dual.yaml for dual-stack),
# TEST_IMAGE (busybox:1.37, for the test pods), OUTSIDE (1.1.1.1, an address outside the
# cluster that kind-test pings), TIMEOUT (180s, for every wait).
set -euo pipefail
cd "$(dirname "$0")/.."

MANIFEST_IMAGE=mycni:dev # the image deploy/mycni.yaml names
IMAGE=${IMAGE:-$MANIFEST_IMAGE}
CLUSTER=${CLUSTER:-mycni}
KIND_CONFIG=${KIND_CONFIG:-deploy/kind/cluster.yaml}
TEST_IMAGE=${TEST_IMAGE:-busybox:1.37}
OUTSIDE=${OUTSIDE:-1.1.1.1}
TIMEOUT=${TIMEOUT:-180s}
MANIFEST=deploy/mycni.yaml
# kubectl always talks to the kind cluster, whatever the current context is.
KUBECTL=(kubectl --context "kind-$CLUSTER")

say() { echo "kind.sh: $*" >&2; }

image() {
  docker build -t "$IMAGE" .
}

kind_up() {
  kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG"
  # No CNI yet: the nodes stay NotReady and CoreDNS Pending until `deploy`.
}

kind_load() {
  kind load docker-image "$IMAGE" --name "$CLUSTER"
}

deploy() {
  "${KUBECTL[@]}" apply -f "$MANIFEST"
  if [[ $IMAGE != "$MANIFEST_IMAGE" ]]; then
    "${KUBECTL[@]}" -n kube-system set image daemonset/mycni mycni="$IMAGE"
  fi
  "${KUBECTL[@]}" -n kube-system rollout status daemonset/mycni --timeout="$TIMEOUT"
}

# Prints a test pod's manifest pinned to one node (nodeName skips the scheduler, so the two pods
# are on different nodes for sure).
test_pod() {
  local name=$1 node=$2
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: default
  labels:
    app.kubernetes.io/name: mycni-kind-test
spec:
  nodeName: $node
  terminationGracePeriodSeconds: 0
  containers:
    - name: main
      image: $TEST_IMAGE
      command: ["sleep", "3600"]
EOF
}

delete_test_pods() {
  "${KUBECTL[@]}" delete pod -l app.kubernetes.io/name=mycni-kind-test --wait=false \
    >/dev/null 2>&1 || true
}

pod_ips() {
  "${KUBECTL[@]}" get pod "$1" -o jsonpath='{range .status.podIPs[*]}{.ip}{"\n"}{end}'
}

kind_test() {
  say "waiting for nodes, the mycni DaemonSet and CoreDNS"
  "${KUBECTL[@]}" wait --for=condition=Ready nodes --all --timeout="$TIMEOUT"
  "${KUBECTL[@]}" -n kube-system rollout status daemonset/mycni --timeout="$TIMEOUT"
  # CoreDNS only becomes Ready once its pods have a network: the first real test of the plugin.
  "${KUBECTL[@]}" -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns \
    --timeout="$TIMEOUT"

  local nodes
  mapfile -t nodes < <("${KUBECTL[@]}" get nodes -l '!node-role.kubernetes.io/control-plane' \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  ((${#nodes[@]} >= 2)) || { say "need two worker nodes, found ${#nodes[@]}"; return 1; }

  # EXIT, not RETURN: under `set -e` a failed check leaves the script without returning.
  trap delete_test_pods EXIT
  { test_pod mycni-test-a "${nodes[0]}"; echo ---; test_pod mycni-test-b "${nodes[1]}"; } |
    "${KUBECTL[@]}" apply -f -
  "${KUBECTL[@]}" wait --for=condition=Ready pod/mycni-test-a pod/mycni-test-b --timeout="$TIMEOUT"

  local ip
  for ip in $(pod_ips mycni-test-b); do
    say "pod on ${nodes[0]} pings pod on ${nodes[1]} at $ip"
    "${KUBECTL[@]}" exec mycni-test-a -- ping -c 3 -W 2 "$ip"
  done
  for ip in $(pod_ips mycni-test-a); do
    say "pod on ${nodes[1]} pings pod on ${nodes[0]} at $ip"
    "${KUBECTL[@]}" exec mycni-test-b -- ping -c 3 -W 2 "$ip"
  done
  say "pod reaches the outside ($OUTSIDE, masqueraded to the node's address)"
  "${KUBECTL[@]}" exec mycni-test-a -- ping -c 3 -W 2 "$OUTSIDE"
  say "pod resolves a Service name through CoreDNS"
  "${KUBECTL[@]}" exec mycni-test-a -- nslookup kubernetes.default.svc.cluster.local
  say "kind-test passed"
}

kind_down() {
  kind delete cluster --name "$CLUSTER"
}

main() {
  (($# > 0)) || set -- help
  local cmd
  for cmd in "$@"; do
    case $cmd in
      image) image ;;
      kind-up) kind_up ;;
      kind-load) kind_load ;;
      deploy) deploy ;;
      kind-test) kind_test ;;
      kind-down) kind_down ;;
      all) image && kind_up && kind_load && deploy && kind_test ;;
      *)
        say "usage: $0 image|kind-up|kind-load|deploy|kind-test|kind-down|all ..."
        [[ $cmd == help ]] && return 0
        return 2
        ;;
    esac
  done
}

main "$@"
