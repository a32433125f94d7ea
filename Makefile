# Two entry points: `make demo` and `make test`. Both build .venv from scratch if needed.

# The interpreter the venv is made from: the system's CPython (/usr/bin/python3) when it is
# 3.11 or newer and can make a venv, else python3 from PATH. A distribution's build (Debian's
# is a static executable compiled with PGO and LTO) runs the agents faster than a default
# source build linked to a shared libpython (pyenv's, this machine's python3): quorum puts
# x1.19 at x0.83 the CPU per put, interleaved in one run (README, Benchmarks).
# `make PYTHON=/path/to/python3.12 test` takes another; the venv is made again whenever the
# choice changes.
SYSTEM_PYTHON := $(shell /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1 && /usr/bin/python3 -m ensurepip --version >/dev/null 2>&1 && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BASE := $(VENV)/.base
# The compiled build of the hot modules (meshcore/_native.py): made again whenever a source
# of the package changes; if it fails (no C compiler), everything runs as Python.
NATIVE := meshcore/_native.sources
SOURCES := $(shell find meshcore -name '*.py')

.PHONY: demo test venv lint typecheck bench clean FORCE

venv: $(STAMP)

# Records which interpreter the venv was made from; a different one empties it.
$(BASE): FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PYTHON)" ]; then \
		rm -rf $(VENV) && mkdir -p $(VENV) && echo "$(PYTHON)" > $@; fi

$(STAMP): pyproject.toml $(BASE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NATIVE): $(STAMP) $(SOURCES)
	$(PY) -m meshcore._native_build build || echo "meshcore: not compiled, running as Python"

demo: $(NATIVE)
	$(PY) -m meshcore.demo

# The suite twice: on the compiled modules (what runs when they are built), then on their
# sources (what runs without a C compiler, or with MESHCORE_PURE=1).
test: lint typecheck $(NATIVE)
	$(PY) -m pytest -q -p no:cacheprovider
	MESHCORE_PURE=1 $(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check meshcore benchmarks examples tests

typecheck: $(STAMP)
	$(PY) -m mypy

# make bench ARGS="kv --nodes 5 --vs etcd --json kv.json" (default: the list of scenarios)
bench: $(NATIVE)
	$(PY) -m benchmarks $(ARGS)

clean:
	test ! -x $(PY) || $(PY) -m meshcore._native_build clean
	rm -rf $(VENV) build *.egg-info $(NATIVE)
