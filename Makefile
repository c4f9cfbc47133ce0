# Quick start: `make demo` (set up + check a bundled sample plan), `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PLAN ?= sample_rtplans/01_pvtt_per_protocol

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sbrt-qa check $(DEMO_PLAN)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# also numba's on-disk cache (sbrt_qa/**/__pycache__/*.nbi, *.nbc): it keeps an entry per edited
# kernel version and grows by hundreds of MB while the kernels are being worked on
clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find sbrt_qa tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} +
