PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test bench wrk clean proto helm image-check

# Tools the tests use, built once and kept outside the repository.
TOOLS ?= $(HOME)/.cache/topicbridge-tools
HELM_VERSION := v4.3.2
GO ?= $(shell command -v go || ls /usr/local/go/bin/go 2>/dev/null)

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

test: $(DEVSTAMP) helm
# The admin UI's browser tests need Debian's chromium (tests/gateway/test_ui_browser.py).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || echo "make test: no chromium: the admin UI browser tests are skipped (they fail under CI=true)"
# The end-to-end bench smoke tests drive wrk (tests/bench/test_gateway_e2e_smoke.py).
	@$(WRK_INSTALL) || echo "make test: no wrk: the end-to-end bench smoke tests are skipped (they fail under CI=true); $(WRK_ADVICE)"
	$(VENV)/bin/lint-imports
	TB_TOOLS_DIR=$(TOOLS) $(PY) -m pytest -q

bench: $(DEVSTAMP) wrk
	$(PY) -m bench.readyset
	$(PY) -m bench.lite_scale --topics 1000000
	$(PY) -m bench.table_scale
	$(PY) -m bench.reply_scale
	$(PY) -m bench.engine_throughput
	$(PY) -m bench.backend_roundtrip --backend lite-remote
	$(PY) -m bench.gateway_e2e --backend lite
	$(PY) -m bench.mcp_e2e --backend lite
	$(PY) -m bench.backend_roundtrip --backend kafka
	$(PY) -m bench.reply_patterns --backend kafka --instances 4

# wrk drives the end-to-end benches (bench.gateway_e2e, bench.mcp_e2e): Debian's package `wrk`,
# installed when root with apt-get (as chromium for make test); otherwise make bench says what to install.
WRK_INSTALL = command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
WRK_ADVICE = install wrk: apt-get install -y wrk (Debian/Ubuntu), dnf install wrk (Fedora), brew install wrk (macOS), or build github.com/wg/wrk and put it on PATH

wrk:
	@$(WRK_INSTALL) || { echo "make bench needs wrk, which is not on PATH and could not be installed here: $(WRK_ADVICE)" >&2; exit 1; }

# helm for tests/deploy/test_helm.py: built from the Go module proxy when Go is there; without
# Go the chart tests skip, except under CI=true, where a missing helm fails here.
helm:
	@if [ -x "$(TOOLS)/helm" ] || command -v helm >/dev/null; then :; \
	elif [ -n "$(GO)" ]; then echo "building helm $(HELM_VERSION) into $(TOOLS)"; \
	  GOBIN="$(TOOLS)" "$(GO)" install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION); \
	elif [ "$$CI" = true ]; then echo "CI=true: helm is missing and there is no Go to build it" >&2; exit 1; \
	else echo "no helm and no Go: the Helm chart tests will skip"; fi

# Build the image (Dockerfile) and run it to /readyz, embedded and with a separate engine; prints
# JSON figures. Needs a Docker engine; BASE_IMAGE=topicbridge-base:bookworm when there is no registry.
image-check: $(DEVSTAMP)
	$(PY) -m bench.image $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

# The gRPC code of the engine service is generated and committed; this regenerates it.
proto: $(DEVSTAMP)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. lite_engine/proto/engine.proto

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
