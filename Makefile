# The two commands a new machine needs (see README):
#   make demo   the main job on a local Kafka broker
#   make test   lint, type checks and the whole test suite against a real broker
# Both install what they need first (virtualenv, pinned packages, Kafka jars from Maven Central)
# and skip that step when nothing changed, so the second run is fast.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JARS   := deploy/kafka/lib/.fetched
PROMTOOL := $(VENV)/tools/bin/promtool
PYTEST_ARGS ?=
# `make test` runs the suite on two workers (pytest-xdist), each with a session broker of its
# own: the broker tests wait on Kafka, timers and child processes about half the time, so two
# fill the two cores (16 min against 23 on the 2-core CI host). One file stays on one worker,
# in collection order (e2e and the fault run first, then the broker tests, the unit tests last,
# so the long ones do not end the run). PYTEST_PARALLEL= runs it in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile --no-loadscope-reorder
# Go programs the manifest tests run (tests/unit/test_k8s_manifests.py: deploy/k8s validated
# offline), built from the Go module proxy into .venv/tools/bin. Each stamp names its version,
# so changing a version here builds it again; otherwise the build happens once.
TOOLS  := $(VENV)/tools
KUBECONFORM_VERSION := v0.8.0
KUSTOMIZE_VERSION   := v5.8.1
KUBECONFORM := $(TOOLS)/.kubeconform-$(KUBECONFORM_VERSION)
KUSTOMIZE   := $(TOOLS)/.kustomize-$(KUSTOMIZE_VERSION)

.PHONY: setup venv jars tools schemas protos dashboards check test test-unit test-integration demo faults bench bench-smoke broker-start broker-stop clean

setup: $(STAMP) $(JARS) $(PROMTOOL) $(KUBECONFORM) $(KUSTOMIZE)

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo]'
	touch $@

jars: $(JARS)

tools: $(KUBECONFORM) $(KUSTOMIZE)

$(KUBECONFORM):
	mkdir -p $(TOOLS)/bin
	GOBIN=$(abspath $(TOOLS)/bin) go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

$(KUSTOMIZE):
	mkdir -p $(TOOLS)/bin
	GOBIN=$(abspath $(TOOLS)/bin) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	touch $@

$(JARS): deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml package
	touch $@

# promtool, which checks and unit-tests the alert rules (deploy/prometheus), taken from Debian's
# prometheus package: the .deb is downloaded and promtool alone extracted from it, so no Prometheus
# server is installed or started. apt-get update only when the package lists lack it.
$(PROMTOOL):
	rm -rf $(VENV)/tools/deb && mkdir -p $(VENV)/tools/deb $(VENV)/tools/bin
	cd $(VENV)/tools/deb && { apt-get download prometheus || { apt-get update -q && apt-get download prometheus; }; }
	dpkg-deb --fsys-tarfile $(VENV)/tools/deb/prometheus_*.deb | tar -xC $(VENV)/tools/deb ./usr/bin/promtool
	install -m 0755 $(VENV)/tools/deb/usr/bin/promtool $@
	rm -rf $(VENV)/tools/deb
	$@ --version | head -1

# The program document's JSON Schema for editors, generated from its pydantic models (a unit
# test fails when the committed file is stale).
schemas: setup
	$(BIN)/python -m referrals.programs.schema > schemas/program.schema.json

# The Grafana dashboards (deploy/grafana/dashboards), generated from referrals/tools/dashboards.py
# (a unit test fails when the committed files are stale).
dashboards: setup
	$(BIN)/python -m referrals.tools.dashboards

# The gRPC API's Python stubs, generated from schemas/proto by grpcio-tools (a unit test fails
# when the committed stubs are stale).
protos: setup
	$(BIN)/python -m services.api.codegen services/api/proto

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/property $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

# SECURE=1: the same year on a secured broker (SASL_SSL, SCRAM, the contract's ACLs), every
# service and party as its own principal.
SECURE ?=
demo: setup
	DEMO_SECURE=$(SECURE) $(BIN)/python -m referrals.tools.demo

# The fault suite: services as processes, a workload with known payouts, faults injected
# (SIGKILLs, a zombie, broker restarts, SMTP down, bad input); exit 1 on a missing or doubled
# payout or a service down. FAULTS_SCALE=bounded|standard|long; report in .faults/.
FAULTS_SCALE ?= standard
faults: setup
	$(BIN)/referrals faults --scale $(FAULTS_SCALE) --out .faults/$(FAULTS_SCALE)

# The benchmark suite (README, Benchmarks): the limit (a bare aiokafka chain through the
# pipeline's hops, Kafka's own perf tools), the peers (ours, faust-streaming, Quix Streams on one
# stateful step), the pipeline (if bench/pipeline.py exists), the gRPC API, then the report:
# bench/results/latest.{json,md,svg}. Each part starts its own broker on free ports in a temp
# dir. BENCH_SCALE=smoke|full (smoke: seconds, figures meaningless). Never fails on a target.
BENCH_SCALE ?= full
QUIX   := $(VENV)/peers/quix
bench: setup $(VENV)/.bench
	BENCH_SCALE=$(BENCH_SCALE) $(BIN)/python bench/limit.py
	BENCH_SCALE=$(BENCH_SCALE) $(BIN)/python bench/peers.py
	test ! -f bench/pipeline.py || BENCH_SCALE=$(BENCH_SCALE) $(BIN)/python bench/pipeline.py
	BENCH_SCALE=$(BENCH_SCALE) $(BIN)/python bench/api_portal.py
	$(BIN)/python bench/report.py

# The benchmarks' smoke runs too slow for `make test` (the pipeline's: four service processes,
# about two minutes), so that bench/pipeline.py cannot rot unnoticed.
bench-smoke: setup
	$(BIN)/python -m pytest -m bench_smoke $(PYTEST_ARGS)

# The bench extras (faust-streaming, py-spy) in the project's venv; Quix Streams in a venv of
# its own (its pins, pydantic<2.14 among them, conflict with ours): bench/quix-requirements.txt.
$(VENV)/.bench: $(STAMP) bench/quix-requirements.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo,bench]'
	test -x $(QUIX)/bin/python || $(PYTHON) -m venv $(QUIX)
	$(QUIX)/bin/python -m pip install --quiet -r bench/quix-requirements.txt
	touch $@

broker-start: setup
	$(BIN)/referrals broker start

broker-stop:
	$(BIN)/referrals broker stop

clean:
	rm -rf $(VENV) deploy/kafka/lib .local .demo .faults .pytest_cache .mypy_cache .ruff_cache .hypothesis
