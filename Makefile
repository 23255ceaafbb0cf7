# power: make venv | run | test | bench | lint
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run test bench lint format clean

venv: $(STAMP)

$(STAMP): src/requirements.txt tests/requirements.txt tests/vm/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r src/requirements.txt -r tests/requirements.txt
	# The real GPIO libraries, for the VM tests only (see that file).
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/gpio-libs \
		-r tests/vm/requirements.txt
	touch $(STAMP)

# The demo: a simulated 1500 W house, in the foreground, CSV in ./var/.
run: venv
	mkdir -p var
	$(PY) src/power.py --settings demo/settings.py --nodaemon

test: venv
	$(PY) -m pytest

# Core throughput, idle CPU and disk writes; then the network sinks.
bench: venv
	$(PY) bench/run.py
	$(PY) bench/sinks.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
