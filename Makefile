# The two commands a newcomer needs:
#   make demo   set up everything on this machine and run the nightly reconciliation once
#   make test   run every test
# Both create the virtual environment (.venv) on first use.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test ui lint bench clean chromium

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -c constraints.txt -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/adloop demo

ui: $(STAMP)
	$(BIN)/adloop ui

# Real-browser tests drive Debian's Chromium (playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .adloop .airflow
