# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium

PORT ?= 6006
LOGDIR ?= runs
# QUICK=1: fewer epochs, about a minute of training.
DEMO_FLAGS := $(if $(filter 1 yes true,$(QUICK)),--quick,)

.PHONY: test demo demo-train venv browser bench clean

$(VENV)/.installed: setup.py requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e .
	touch $@

venv: $(VENV)/.installed

# Headless Chromium for the browser tests (Debian's package; Playwright's own
# browser download is not used).
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: venv browser
	$(PY) -m pytest -q tests

# Train the demo runs into ./runs, then serve them.
demo: demo-train
	@echo "Gradients tab: http://localhost:$(PORT)/#gradients"
	$(PY) -m tensorboard.main --logdir $(LOGDIR) --port $(PORT)

# Train only (no server).
demo-train: venv
	$(PY) -m demo.train --logdir $(LOGDIR) $(DEMO_FLAGS)

bench: venv browser
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
