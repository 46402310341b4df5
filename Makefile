# Two entry points, both working on a fresh machine with Python 3.11, git and make:
#   make demo   set up, build the bundled demo repository and scan it, then scan it as the Hub
#               keeps it (ML files in LFS) on the bundled Hub stand-in, on loopback
#   make test   set up and run the whole test suite (the findings page's tests drive the OS's
#               Chromium, installed here from the distribution's packages if missing)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO   ?= /tmp/leakscan-demo

.PHONY: demo test setup clean
# Bytecode written here, not at first import: an editable install under PYTHONDONTWRITEBYTECODE
# would otherwise compile leakscan's modules on every start (a tenth of a second).
setup: $(VENV)/.installed
	@$(PY) -m compileall -q leakscan > /dev/null

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(PY) fixtures/make_demo.py $(DEMO)
	$(VENV)/bin/leakscan scan $(DEMO)/model-repo; test $$? -le 1
	$(PY) fixtures/demo_hub.py $(DEMO); test $$? -le 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: setup
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)
	$(PY) -m pytest -n 2 -q
	$(VENV)/bin/leakscan scan .

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
