# The README's two commands: `make demo` runs the main job on the embedded default,
# `make test` runs the whole suite. Both create .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test lint install install-dev bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[cpu,demo]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[cpu,dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(PY) -m dinoseek.demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the import-layer contracts of pyproject.toml ([tool.importlinter])
lint: $(VENV)/.installed-dev
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed-dev
	$(PY) bench/embed_throughput.py

clean:
	rm -rf $(VENV) *.egg-info
