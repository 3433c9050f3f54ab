# sgdbound: every target sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# torch and torchvision are pinned to the builds that lie on this machine's disk (no download).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint reproduce reproduce-quick bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet $(TORCH_PINS) -e '.[kd,test,dist]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check sgdbound tests benchmarks

test: install
	$(VENV)/bin/ruff check sgdbound tests benchmarks
	$(PY) -m pytest -n 2 -q

test-fast: install
	$(PY) -m pytest -n 2 -q -m "not slow"

reproduce: install
	$(VENV)/bin/sgdbound reproduce

reproduce-quick: install
	$(VENV)/bin/sgdbound reproduce --quick

bench: install
	$(PY) benchmarks/bench.py --no-fail --threads 1
	$(PY) benchmarks/bench_sim.py --threads 1

bench-gpu: install
	$(PY) benchmarks/bench_gpu.py
	$(PY) benchmarks/bench_vi.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
