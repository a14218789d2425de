# make serve: set up .venv if missing and run the service on ./policies with SQLite.
# make test:  set up .venv if missing and run the whole test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: serve test check lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,ui]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/kti-policy serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(VENV)/bin/kti-policy check policies
	$(VENV)/bin/kti-policy test policies --coverage
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

bench: $(STAMP)  # the figures of README "Measured"; http_bench needs wrk (apt-get install wrk)
	$(PY) bench/engine_bench.py
	$(PY) bench/peer_bench.py  # the Cedar row needs cedarpy: pip install -e '.[bench]'
	$(PY) bench/events_bench.py
	$(PY) bench/diff_bench.py
	$(PY) bench/http_bench.py
	$(PY) bench/app_profile.py
	$(PY) bench/register_bench.py

clean:
	rm -rf $(VENV) instance build *.egg-info
