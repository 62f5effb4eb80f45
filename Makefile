# queuefront: `make run` (the whole stack, foreground) and `make test` (the full suite).
# Both install what they need: the .venv with pinned packages and the SQS emulator.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SQS_DIR := deploy/local/sqs
# checkov's pins (packaging<24, an old botocore, its own hcl2 fork) clash with ours:
# it lives in a venv of its own, used only by tests/terraform
CHECKOV_VENV := .venv-checkov
CHECKOV_REQS := tests/terraform/requirements-checkov.txt
PACKAGES := queuefront service workers examples devstack

export QF_SQS_ENDPOINT_URL ?= http://127.0.0.1:9324
export QF_REDIS_URL ?= redis://127.0.0.1:6379/0
export QF_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/queuefront
# auth fails closed: the api refuses to start without credentials unless told that is
# intended. `make run` says so only when no credentials are given, so
# `QF_AUTH_API_KEYS=… make run` enforces them.
export QF_AUTH_DISABLED ?= $(if $(QF_AUTH_API_KEYS)$(QF_AUTH_INVALIDATE_KEYS)$(QF_AUTH_JWT_SECRET),false,true)

.PHONY: run test lint unit docs bench sla deps test-deps tf-test tf-mutations mutations clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(SQS_DIR)/node_modules/.package-lock.json: $(SQS_DIR)/package-lock.json
	cd $(SQS_DIR) && npm ci --no-audit --no-fund --loglevel=error

$(CHECKOV_VENV)/bin/checkov: $(CHECKOV_REQS)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r $(CHECKOV_REQS)
	touch $@

# promtool (checks of deploy/prometheus): only the binary, taken from Debian's
# prometheus package, so no Prometheus server is installed or started
$(BIN)/promtool: | $(BIN)/.installed
	@if command -v promtool >/dev/null; then ln -sf "$$(command -v promtool)" $@; else \
	  d=$$(mktemp -d) && (cd $$d && apt-get update -qq && apt-get download -q prometheus \
	  && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > promtool) \
	  && install -m 0755 $$d/promtool $@ && rm -rf $$d; fi

# libfaketime (tests/integration/test_clocks.py runs workers with skewed wall clocks): only
# the library the `faketime` command preloads, taken from Debian's libfaketime package, so
# nothing is installed system-wide; a system copy is used when there is one
FAKETIME_LIB := $(VENV)/lib/faketime/libfaketime.so.1
$(FAKETIME_LIB): | $(BIN)/.installed
	@mkdir -p $(@D); sys=$$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n1); \
	if [ -n "$$sys" ]; then ln -sf "$$sys" $@; else \
	  d=$$(mktemp -d) && (cd $$d && apt-get update -qq && apt-get download -q libfaketime \
	  && dpkg-deb -x libfaketime_*.deb x) \
	  && install -m 0644 $$d/x/usr/lib/*/faketime/libfaketime.so.1 $@ && rm -rf $$d; fi

# wrk (the benchmarks' closed-loop load generator, bench/closedloop.py): Debian's wrk and
# the LuaJIT it links, unpacked into the venv and run through a wrapper that finds that
# library, so nothing is installed system-wide; a system copy is used when there is one
WRK_DIR := $(VENV)/lib/wrk
$(BIN)/wrk: | $(BIN)/.installed
	@if command -v wrk >/dev/null; then ln -sf "$$(command -v wrk)" $@; else \
	  d=$$(mktemp -d) && (cd $$d && apt-get update -qq \
	  && apt-get download -q wrk libluajit2-5.1-2 && for p in *.deb; do dpkg-deb -x $$p x; done) \
	  && mkdir -p $(WRK_DIR) && cp -a $$d/x/usr/bin/wrk $$d/x/usr/lib/*/libluajit-5.1.so.2* $(WRK_DIR)/ \
	  && printf '#!/bin/sh\nd="$$(dirname "$$(readlink -f "$$0")")/../lib/wrk"\nLD_LIBRARY_PATH="$$d" exec "$$d/wrk" "$$@"\n' > $@ \
	  && chmod 0755 $@ && rm -rf $$d; fi

deps: $(BIN)/.installed $(SQS_DIR)/node_modules/.package-lock.json

test-deps: deps $(CHECKOV_VENV)/bin/checkov $(BIN)/promtool $(FAKETIME_LIB) $(BIN)/wrk

run: deps
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -f Procfile

lint: $(BIN)/.installed
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports --no-cache

test: test-deps lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q --durations=15

unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit

# the generated tables of docs/ (settings, metrics) from the code's own descriptions;
# tests/unit/test_docs.py fails while they are out of date
docs: $(BIN)/.installed
	$(BIN)/python -m queuefront.docgen

# deploy/terraform: `terraform test` of the root (examples/production.tfvars) and of every
# module with mocked AWS providers, offline: tests/terraform/tfcli.py points terraform at the
# provider mirror (TF_PLUGIN_MIRROR, default /opt/tf-plugins). `make test` runs it too.
tf-test: $(BIN)/.installed
	$(BIN)/pytest -q tests/terraform/test_terraform_test.py tests/terraform/test_terraform_validate.py tests/terraform/test_graph.py

# Proof of the terraform suites: each regression in tests/terraform/mutate.py is applied to
# a scratch copy and must make a suite fail (minutes; not part of `make test`).
tf-mutations: $(BIN)/.installed
	$(BIN)/python -m tests.terraform.mutate

# Proof of the hardening's regression tests (issue 9): each mutation in tests/mutate.py
# reverts one fix in a scratch copy of the tree and must make the tests that guard it fail
# (20 to 40 minutes; not part of `make test`). MUTATIONS_ARGS picks some: names, -k TEST.
mutations: deps $(FAKETIME_LIB)
	$(BIN)/python -m tests.mutate $(MUTATIONS_ARGS)

# the current benchmark: throughput, latency and CPU per request of the four paths
# (docs/benchmarks.md); BENCH_ARGS, e.g. "--rounds 1 --seconds 5" for a smoke run
bench: deps $(BIN)/wrk
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

# the kiosk's SLA table (old architecture, queued route, cached route); about 40 minutes.
# SLA_ARGS=--quick for a smoke run (under 2 minutes); see bench/README.md. wrk measures
# the capacities
sla: deps $(BIN)/wrk
	$(BIN)/python -m bench.sla $(SLA_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SQS_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache
