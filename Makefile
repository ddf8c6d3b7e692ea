# cellwatch — two commands on a fresh machine: `make demo` and `make test`.
# Everything a target needs is installed here, idempotently (a stamp file per step).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cellwatch-installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test bench fuzz lint clean help system-packages

help:
	@echo "make demo   - install into $(VENV) and run the whole system on the bundled demo prison"
	@echo "make test   - install into $(VENV) if needed and run the whole test suite"
	@echo "make bench  - long benchmarks (detection, localization, throughput); results in bench/results/"
	@echo "make fuzz   - the fuzz tests on fresh random inputs (make test replays the same ones)"
	@echo "make lint   - ruff, mypy and the package-boundary contracts"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cellwatch needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The service, the dashboard and 12 simulated sensor nodes; Ctrl-C stops them all.
# Options go in ARGS, e.g. make demo ARGS="--duration 600 --port 8081" (cellwatch demo --help).
demo: $(STAMP)
	$(VENV)/bin/cellwatch demo $(ARGS)

# The browser tests drive Debian's Chromium with Playwright (`playwright install` cannot
# download here) and the PostgreSQL tests start a throwaway server: the distribution
# packages are installed when missing, as root or through sudo.
system-packages:
	@if ! command -v $(CHROMIUM) >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and postgresql for the browser and database tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq chromium fonts-dejavu-core postgresql >/dev/null; \
	fi

test: $(STAMP) system-packages
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m bench.run

# fresh random inputs for the fuzz tests (make test replays the same ones every run)
fuzz: $(STAMP) system-packages
	CELLWATCH_FUZZ=explore $(VENV)/bin/pytest -q tests/hardening/test_fuzz_wire.py \
	  tests/hardening/test_fuzz_recordings.py tests/hardening/test_fuzz_config.py tests/hardening/test_schemathesis.py

lint: $(STAMP)
	$(VENV)/bin/ruff check dsp sdr service calibration tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
