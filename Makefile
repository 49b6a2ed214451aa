# The two set-up commands of the README: `make book` and `make test`. Each creates its own virtual
# environment (.venv) on first use. TORCH pins the CPU build that these machines hold on local disk;
# on another machine, override it (e.g. `make test TORCH="torch>=2.4"`).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.critkl-installed
PYTEST := $(BIN)/python -m pytest -q -p no:randomly

# One model cache for both commands: `make test` reuses what `make book` trained, and the other way round.
CRITKL_HOME ?= $(CURDIR)/.critkl-home
export CRITKL_HOME

.PHONY: test book book-committed install clean-book test-unit test-nbval test-browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Unit tests, every chapter under nbval, the book, then every page of the book in Chromium, in that
# order. Any pytest exit status other than 0 fails (5, "no tests collected", included). nbval has just
# executed every chapter and checked its summary cells against the committed outputs, so the book of
# `make test` is built from those committed outputs (book-committed) instead of executing every chapter a
# second time; `make book` executes them.
test: $(STAMP)
	$(MAKE) test-unit
	$(MAKE) test-nbval
	$(MAKE) book-committed
	$(MAKE) test-browser

# --durations: the CI log shows where the unit tests' time goes (the real-SLURM sweeps among them).
test-unit: $(STAMP)
	$(PYTEST) tests --ignore=tests/browser --durations=15

test-nbval: $(STAMP)
	$(PYTEST) book --nbval-lax --nbval-current-env --durations=10

# Chapters are executed (cached by jupyter-cache in _build/.jupyter_cache) at the default CPU scale.
# A chapter that fails leaves its execution report in _build/html/reports: print them, then fail.
book: $(STAMP)
	rm -rf _build/html/reports
	$(BIN)/jupyter-book build . -W -n --keep-going || { status=$$?; \
	  for f in $$(find _build/html/reports -type f 2>/dev/null | sort); do \
	    echo "=================== execution report: $$f"; cat "$$f"; done; \
	  exit $$status; }

# The same build with execute_notebooks off: the pages show the committed (nbval-checked) outputs.
book-committed: $(STAMP)
	mkdir -p _build
	sed 's/^  execute_notebooks: cache/  execute_notebooks: "off"/' _config.yml > _build/_config-committed.yml
	grep -q 'execute_notebooks: "off"' _build/_config-committed.yml
	$(BIN)/jupyter-book build . --config _build/_config-committed.yml -W -n --keep-going

# Needs the built book (`make book`) and Chromium (Debian: apt-get install chromium); screenshots of
# every page go to _build/screenshots.
test-browser: $(STAMP)
	$(PYTEST) tests/browser

clean-book:
	rm -rf _build
