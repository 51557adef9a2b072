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
PYTEST_ARGS ?=

.PHONY: setup venv jars schemas protos check test test-unit test-integration demo faults bench broker-start broker-stop clean

setup: $(STAMP) $(JARS)

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo]'
	touch $@

jars: $(JARS)

$(JARS): deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml package
	touch $@

# The program document's JSON Schema for editors, generated from its pydantic models (a unit
# test fails when the committed file is stale).
schemas: setup
	$(BIN)/python -m referrals.programs.schema > schemas/program.schema.json

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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/property $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m referrals.tools.demo

# The fault suite: services as processes, a workload with known payouts, faults injected
# (SIGKILLs, a zombie, broker restarts, SMTP down, bad input); exit 1 on a missing or doubled
# payout or a service down. FAULTS_SCALE=bounded|standard|long; report in .faults/.
FAULTS_SCALE ?= standard
faults: setup
	$(BIN)/referrals faults --scale $(FAULTS_SCALE) --out .faults/$(FAULTS_SCALE)

# Throughput of the shared runtime vs a bare aiokafka loop, measured in the same run.
bench: setup $(VENV)/.bench
	$(BIN)/python bench/runtime_throughput.py
	$(BIN)/python bench/api_portal.py

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,demo,bench]'
	touch $@

broker-start: setup
	$(BIN)/referrals broker start

broker-stop:
	$(BIN)/referrals broker stop

clean:
	rm -rf $(VENV) deploy/kafka/lib .local .demo .faults .pytest_cache .mypy_cache .ruff_cache .hypothesis
