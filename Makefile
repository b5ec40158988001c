# gemforge. `make run` does the whole job on a fresh Debian/Ubuntu machine (installs what is missing,
# builds the kernels, fetches the default model, generates text); `make test` runs the tests.
# Parameters are `?=` defaults: `make run PROMPT="Why is the sky blue?" MAX_TOKENS=64`.

# The Python that has gemforge: .venv/ when scripts/setup.sh made one (system Python under PEP 668),
# else python3. Evaluated when used, so a .venv made by `setup` counts in the same `make` run.
PYTHON ?= $(shell test -x .venv/bin/python && echo .venv/bin/python || echo python3)
GEMFORGE = $(PYTHON) -m gemforge.runtime.cli
PROMPT ?= The capital of France is
MAX_TOKENS ?= 32
RUN_ARGS ?=
BENCH_ARGS ?= --synthetic 270m
KERNEL_ARGS ?=
PYTEST_ARGS ?=

.PHONY: test-all help setup kernels test run bench doctor snapshots clean
help:
	@echo "make run      install what is missing, build kernels, fetch the default model, generate text"
	@echo "              (PROMPT=\"...\" MAX_TOKENS=$(MAX_TOKENS) RUN_ARGS=\"--temperature 0.8\")"
	@echo "make test     install what is missing, build kernels, run the tests but the slow ones (PYTEST_ARGS=...)"
	@echo "make test-all the same with the slow tests (the numpy reference checked on every golden)"
	@echo "make setup    install system packages and the Python package when missing"
	@echo "make kernels  render and compile every kernel variant into build/ (incremental)"
	@echo "make bench    measure prefill/decode speed (BENCH_ARGS=\"$(BENCH_ARGS)\")"
	@echo "make doctor   what this machine has and lacks, with fixes"
	@echo "make snapshots  accept intended changes to rendered kernel sources (tests/snapshots/glsl)"
	@echo "make clean    delete build/"

setup:
	bash scripts/setup.sh

kernels: setup
	$(GEMFORGE) kernels $(KERNEL_ARGS) && $(GEMFORGE) kernels --target npu $(KERNEL_ARGS)

test: kernels
	$(PYTHON) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

test-all: kernels
	$(PYTHON) -m pytest -q $(PYTEST_ARGS) tests

run: kernels
	$(GEMFORGE) run --prompt "$(PROMPT)" --max-tokens $(MAX_TOKENS) $(RUN_ARGS)

bench: kernels
	$(GEMFORGE) bench $(BENCH_ARGS)

doctor: setup
	$(GEMFORGE) doctor

snapshots:
	$(PYTHON) -m tests.snapshots.update

clean:
	rm -rf build
