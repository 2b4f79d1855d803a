# The two commands of the README: `make demo` and `make test`.
# Both create and fill the virtual environment themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck browser bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/alliance demo

# Debian's Chromium for the end-to-end tests (Playwright's own download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# axe-core for the accessibility checks of the end-to-end tests, and LHC-Forms (lforms)
# for the FHIR client tests (package.json, pinned); one `npm ci` installs both.
AXE := node_modules/axe-core/axe.min.js
LFORMS := node_modules/lforms/dist/lforms/webcomponent/main.js
$(AXE) $(LFORMS) &: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }
	npm ci --no-audit --no-fund --silent
	touch $(AXE) $(LFORMS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) browser $(AXE) $(LFORMS) lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
