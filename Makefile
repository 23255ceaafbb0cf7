# power: make venv | run | test | bench | lint | docs
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run test bench lint format docs clean

venv: $(STAMP)

# Self-healing: the stamp is written last, so an interrupted run is simply
# run again, and a venv left without a working pip is made anew.
$(STAMP): src/requirements.txt tests/requirements.txt tests/vm/requirements.txt
	@$(PY) -m pip --version >/dev/null 2>&1 || { \
	    echo "make venv: creating $(VENV) with $(PYTHON)"; \
	    rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@echo "make venv: installing the requirements into $(VENV) (a minute or two)"
	$(PY) -m pip install --progress-bar off --disable-pip-version-check \
	    -r src/requirements.txt -r tests/requirements.txt
	@$(PY) -m pip check >/dev/null || { \
	    echo "make venv: the install did not finish; run make venv again"; exit 1; }
	@# The real GPIO libraries, for the VM tests only (see that file).
	$(PY) -m pip install --progress-bar off --disable-pip-version-check \
	    --upgrade --target $(VENV)/gpio-libs -r tests/vm/requirements.txt
	@touch $(STAMP)
	@echo "make venv: ready"

# The demo: a simulated 1500 W house, in the foreground, CSV in ./var/.
run: venv
	mkdir -p var
	$(PY) src/power.py --settings demo/settings.py --nodaemon

test: venv
	$(PY) -m pytest

# Core throughput, idle CPU and disk writes; memory, syncs and wakeups
# beside an earlier version (block-device figures need root); then the
# network sinks; then a fleet of 50 daemons into one broker and one InfluxDB
# (about 12 minutes); then the live path, the page and the commit interval's
# cost (about 30 minutes; the card's figures need root).
bench: venv
	$(PY) bench/run.py
	$(PY) bench/lean.py
	$(PY) bench/sinks.py
	$(PY) bench/fleet.py
	$(PY) bench/cpu.py
	$(PY) bench/influxlines.py
	$(PY) bench/live.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .

# The manual, as HTML in docs/_build/html; any Sphinx warning fails the build.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): docs/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet -r docs/requirements.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis docs/_build docs/_generated
