PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test bench clean proto

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(VENV)/bin/topicbridge serve --demo

test: $(DEVSTAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

bench: $(DEVSTAMP)
	$(PY) -m bench.readyset
	$(PY) -m bench.lite_scale --topics 1000000
	$(PY) -m bench.engine_throughput
	$(PY) -m bench.backend_roundtrip --backend lite-remote
	$(PY) -m bench.gateway_e2e --backend lite
	$(PY) -m bench.mcp_e2e --backend lite
	$(PY) -m bench.backend_roundtrip --backend kafka
	$(PY) -m bench.reply_patterns --backend kafka --instances 4

# The gRPC code of the engine service is generated and committed; this regenerates it.
proto: $(DEVSTAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. lite_engine/proto/engine.proto

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
