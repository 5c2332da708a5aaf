# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install the project into it, with the gpu
# extra (TensorFlow's CUDA libraries) when `nvidia-smi -L` lists a GPU.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo
# `make demo DEMO_REPORT_FLAGS=--json` also saves the result for `make docs`
# (benchmarks/results/<machine>/demo.json).
DEMO_REPORT_FLAGS ?=
MACHINE := $(shell $(PYTHON) scripts/machine_id.py)
# "dev" or "dev,gpu" (research/runtime.py install_extras); expanded only when installing.
EXTRAS = $(shell $(PYTHON) -c 'from research.runtime import install_extras; print(install_extras())')

.PHONY: install test test-all demo docs docs-check bench bench-saved bench-check speedups clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

# Two tiers with the same guarantees between them. `make test` (contributors): every
# module's contract on tiny inputs, everything not marked @pytest.mark.slow.
# `make test-all` (CI): everything, the process-level tests too (kill chains, workers,
# launcher, deterministic pairs, XLA twins, every TFLite mode). Both run the tests in
# TEST_WORKERS pytest-xdist processes, whole files per process (`--dist loadfile`: a
# module's fixtures are built once). Measured on the 2-core Intel Xeon (fast tier):
# 2 processes 107 s, 1 process 174 s; TensorFlow's own threads leave the second core
# idle during Python-bound tracing and small ops. The README's Tests section has the timings.
# test-all hands out the modules with slow tests first (tests/conftest.py
# run_slow_modules_first), not xdist's most-tests-first order, which left the heavy
# modules with few tests for the end.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST) --durations=15

test-all: $(STAMP)
	$(PYTEST) --run-slow --no-loadscope-reorder --durations=25

# A fresh run each time: runs/demo is the demo's own folder (a finished run there would
# otherwise be resumed, that is, not trained again).
demo: $(STAMP)
	rm -rf $(DEMO_RUN)
	@start=$$(date +%s) && set -e && \
	$(PY) scripts/make_synthetic_voc.py --root $(DEMO_DATA) --num-train 960 --num-val 240 --seed 0 --overwrite && \
	$(PY) scripts/show_batch.py --config demo --voc-root $(DEMO_DATA)/VOCdevkit/VOC2012 --out $(DEMO_RUN)/batch.png && \
	$(PY) -m research.train --config demo --workdir $(DEMO_RUN) && \
	$(PY) -m research.evaluate --workdir $(DEMO_RUN) --subset test && \
	$(PY) scripts/demo_report.py --workdir $(DEMO_RUN) --started-at $$start $(DEMO_REPORT_FLAGS)

# Regenerates the tables and references between the `generated` markers of README.md and
# docs/ from saved artifacts (benchmarks/baselines/, benchmarks/results/) and the code;
# measures nothing. `make docs-check` fails when a page is out of date.
docs: $(STAMP)
	$(PY) scripts/make_docs.py

docs-check: $(STAMP)
	$(PY) scripts/make_docs.py --check

# Benchmarks are not part of `make test`. Saved runs are kept per machine
# (scripts/machine_id.py), because pytest-benchmark's machine id holds only the OS and
# Python version. `make bench` saves a run; `make bench-check` compares a new run with
# the latest saved one on the same machine and fails when the project's own code (not the
# baselines it is compared with: benchmarks/support.py bench_case) got 25% slower. It
# compares minimum times: timing noise on a shared VM only ever adds time, and a
# millisecond kernel's mean moved 26% between two quiet runs of unchanged code here.
BENCH_STORAGE := benchmarks/baselines/$(MACHINE)
# The subfolder of this Python's runs: the only one --benchmark-compare reads.
BENCH_PYTHON = $(shell $(PYTHON) scripts/machine_id.py --benchmark-folder)
BENCH_FLAGS ?=

bench: $(STAMP)
	$(PY) -m pytest benchmarks -s --benchmark-storage=$(BENCH_STORAGE) --benchmark-autosave $(BENCH_FLAGS)

# Without a saved run for this machine, one line says so and how to make one, before
# anything is installed or run ($(error) in the first prerequisite's recipe stops make).
bench-saved:
	$(if $(wildcard $(BENCH_STORAGE)/$(BENCH_PYTHON)/*.json),@true,$(error no saved benchmark run for machine \
		$(MACHINE) in $(BENCH_STORAGE)/$(BENCH_PYTHON)/: run `make bench` on this machine to save one, then \
		`make bench-check`))

bench-check: bench-saved $(STAMP)
	$(PY) -m pytest benchmarks -s -m "not baseline" --benchmark-storage=$(BENCH_STORAGE) --benchmark-compare \
		--benchmark-compare-fail=min:25% $(BENCH_FLAGS)

speedups: $(STAMP)
	$(PY) scripts/check_speedups.py

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
