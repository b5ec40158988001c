# gemforge: `make run` does the whole job on a fresh Debian/Ubuntu machine; `make test` runs the tests.
PYTHON ?= python3
PROMPT ?= The capital of France is

.PHONY: setup kernels test run clean
setup:
	bash scripts/setup.sh

kernels: setup
	gemforge kernels

test: kernels
	$(PYTHON) -m pytest -q tests

run: kernels
	gemforge run --prompt "$(PROMPT)"

clean:
	rm -rf build
