# mycni: every common job. `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
DENO := $(CURDIR)/tools/bin/deno
export PATH := $(CURDIR)/tools/bin:$(PATH)
export DENO_NO_UPDATE_CHECK := 1
TEST := $(DENO) test --allow-all --no-lock

.PHONY: setup build static unit integration reliability test demo bench clean

setup:
	@bash scripts/setup.sh

build: setup
	@bash scripts/build.sh

# Format, lint and type-check: the same gates CI applies.
static: setup
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check --no-lock mycni.ts init.ts lib tests bench scripts

unit: setup
	$(TEST) tests/unit

# Privileged: real namespaces, bridges, veths and iptables, all inside namespaces the tests make.
# The interop suite also needs containerd, podman and a Go toolchain (installed when missing).
integration: build
	@bash scripts/setup-interop.sh
	$(TEST) tests/integration

# Storms, crashes, reboots, bad input and agent faults (privileged too).
reliability: build
	$(TEST) tests/reliability

test: static unit integration reliability

demo: build
	$(DENO) run --allow-all --no-lock scripts/demo.ts

# Benchmarks print figures (ratios against the reference and targets); they are not tests.
bench: build
	$(DENO) run --allow-all --no-lock bench/plugin_latency.ts
	$(DENO) run --allow-all --no-lock bench/agent_sync.ts
	$(DENO) run --allow-all --no-lock bench/throughput.ts
	$(DENO) run --allow-all --no-lock bench/policy_scale.ts
	$(DENO) run --allow-all --no-lock bench/policy_throughput.ts
	$(DENO) run --allow-all --no-lock bench/cnp_scale.ts
	$(DENO) run --allow-all --no-lock bench/cnp_conn_rate.ts
	$(DENO) run --allow-all --no-lock bench/flow_log_storm.ts
	$(DENO) run --allow-all --no-lock bench/flow_log_agent_storm.ts
	$(DENO) run --allow-all --no-lock bench/strict_cut.ts

clean:
	rm -rf bin

# Machines with Docker, kind and kubectl only: see README "Run it on kind".
.PHONY: image kind-up kind-load deploy kind-test kind-down
image kind-up kind-load deploy kind-test kind-down:
	@bash scripts/kind.sh $@
