# `make` sets everything up and runs the main job; `make test` runs the test suite.
# Both are idempotent. VENV may point at an existing environment whose torch should be kept.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
GL_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PY := $(VENV)/bin/python

.PHONY: all setup system-packages run preview test lint
all: run

system-packages:
	@dpkg -s $(GL_PACKAGES) >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(GL_PACKAGES); }

$(VENV)/.installed: pyproject.toml constraints.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, and only if missing, so a GPU user's own build is kept
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	@# the exact versions CI ran with (constraints.txt); pyproject keeps the loose ranges
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,parallel,slurm]"
	touch $@

setup: system-packages $(VENV)/.installed

run: setup
	$(PY) -m experiments.reproduce paper=next_forcing scale=tiny

preview: setup
	$(PY) -m experiments.preview

test: setup
	$(PY) -m experiments.pin_versions --check
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
