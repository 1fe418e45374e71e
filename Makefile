# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install the
# package with what it needs (pip takes torch from PyPI: the CUDA build on Linux x86_64).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test,tensorboard]"
	touch $(STAMP)

## Train LeNet-5 on scikit-learn's digits, test it, and print where the run folder is
## (options after DEMO_ARGS, e.g. make demo DEMO_ARGS="--epochs 5"; see visiontasks demo --help).
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/visiontasks demo $(DEMO_ARGS)

## The whole test suite (learning, bf16 and 2-process DDP runs included).
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --durations=25

## Everything but the runs marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 -m "not slow"

clean:
	rm -rf $(VENV) runs
