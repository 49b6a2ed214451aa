# The two set-up commands of the README: `make book` and `make test`. Each creates its own virtual
# environment (.venv) on first use. TORCH pins the CPU build that these machines hold on local disk;
# on another machine, override it (e.g. `make test TORCH="torch>=2.4"`).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.critkl-installed

.PHONY: test book install clean-book

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	CRITKL_HOME=$${CRITKL_HOME:-$(CURDIR)/.critkl-test-home} $(BIN)/python -m pytest -q tests book --nbval-lax --nbval-current-env -p no:randomly

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

clean-book:
	rm -rf _build
