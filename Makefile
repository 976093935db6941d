# mycni: every common job. `make test` and `make demo` do all set-up on a fresh machine.
SHELL := /bin/bash
DENO := $(CURDIR)/tools/bin/deno
export PATH := $(CURDIR)/tools/bin:$(PATH)
export DENO_NO_UPDATE_CHECK := 1
TEST := $(DENO) test --allow-all --no-lock

.PHONY: setup build static unit integration test demo bench clean

setup:
	@bash scripts/setup.sh

build: setup
	@bash scripts/build.sh

# Format, lint and type-check: the same gates CI applies.
static: setup
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check --no-lock mycni.ts init.ts lib tests bench

unit: setup
	$(TEST) tests/unit

# Privileged: real namespaces, bridges, veths and iptables, all inside namespaces the tests make.
integration: build
	$(TEST) tests/integration

test: static unit integration

demo: build
	$(DENO) run --allow-all --no-lock scripts/demo.ts

bench: build
	$(DENO) run --allow-all --no-lock bench/plugin_latency.ts

clean:
	rm -rf bin

# Machines with Docker, kind and kubectl only: see README "Run it on kind".
.PHONY: image kind-up kind-load deploy kind-test kind-down
image kind-up kind-load deploy kind-test kind-down:
	@bash scripts/kind.sh $@
