# power: make venv | run | test | bench | lint | docs
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: venv venv-run run test bench lint format docs clean

# What running needs (pure Python off a Pi: no compiler), then the tests'
# tools and the real GPIO libraries the VM tests build from source (a C
# compiler and the Python headers: gcc, python3-dev).
venv: $(STAMP)
venv-run: $(RUN_STAMP)

# Self-healing: a stamp is written last, so an interrupted run is simply
# run again, and a venv left without a working pip is made anew.
$(RUN_STAMP): src/requirements.txt
	@$(PY) -m pip --version >/dev/null 2>&1 || { \
	    echo "make: creating $(VENV) with $(PYTHON)"; \
	    rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@echo "make: installing what power needs into $(VENV)"
	$(PY) -m pip install --progress-bar off --disable-pip-version-check \
	    -r src/requirements.txt
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) tests/requirements.txt tests/vm/requirements.txt docs/requirements.txt
	@echo "make venv: installing the test requirements into $(VENV) (a minute or two)"
	@# The manual's tests build it: Sphinx too.
	$(PY) -m pip install --progress-bar off --disable-pip-version-check \
	    -r src/requirements.txt -r tests/requirements.txt -r docs/requirements.txt
	@$(PY) -m pip check >/dev/null || { \
	    echo "make venv: the install did not finish; run make venv again"; exit 1; }
	@# The real GPIO libraries, for the VM tests only (see that file); they
	@# compile: a missing compiler is said before pip's hundred lines.
	@command -v gcc >/dev/null || { echo "make venv: the GPIO tests build gpiod \
	from source and need a C compiler: sudo apt install gcc python3-dev"; exit 1; }
	$(PY) -m pip install --progress-bar off --disable-pip-version-check \
	    --upgrade --target $(VENV)/gpio-libs -r tests/vm/requirements.txt
	@touch $(STAMP)
	@echo "make venv: ready"

# The demo: a simulated 1500 W house, in the foreground, CSV in ./var/.
run: venv-run
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
	$(PY) bench/registers.py

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
