# Every target builds .venv itself, so a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-litellm bench proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/infersight serve

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# LiteLLM in a virtualenv of its own: the litellm releases that install pin openai<3, and the
# main environment tests openai 3.x. Runs tests/sdk/test_litellm.py, skipped by `make test`.
LITELLM_VENV := $(VENV)/litellm
$(LITELLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/pip install --quiet -e '.[litellm]' pytest pytest-timeout pandas pyarrow
	touch $@

test-litellm: $(LITELLM_VENV)/.installed
	$(LITELLM_VENV)/bin/python -m pytest -q tests/sdk/test_litellm.py $(PYTEST_ARGS)

# Full settings by default (30-45 minutes on 2 cores: 10M-span stores, 60 s of ingest per
# path); BENCH_QUICK=1 checks the harness in about 5 minutes; BENCH_ARGS passes more flags
# (e.g. BENCH_ARGS="--only ingest", which prints the table and leaves the doc alone).
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

# Stubs for proto/infersight/v1/*.proto, generated into the SDK (package infersight.v1) so the
# SDK and the collector import the same code; generated files are never edited by hand.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=sdk --pyi_out=sdk \
		--grpc_python_out=sdk proto/infersight/v1/*.proto

clean:
	rm -rf $(VENV) .infersight
