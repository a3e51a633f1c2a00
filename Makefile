# Everything a user does: `make run`, `make test`, `make lint`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint format run demo clean bench soak

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# --durations: CI's log names the slowest tests of every run, where time goes when it grows.
test: $(STAMP)
	$(BIN)/pytest -q --durations=25

# Needs nothing outside the venv: no redis-server, no chromium, no docker-compose, no promtool.
# A test that reaches for one anyway fails here, saying which marker it lacks.
test-fast: $(STAMP)
	RVT_TESTS_WITHOUT_SERVICES=1 $(BIN)/pytest -q -m "not integration and not e2e and not external"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The whole service on this machine: a private Redis (unless REDIS_URL is set), a training
# worker, a prediction worker and the API on http://127.0.0.1:8000 (or PORT). Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/rvt serve

# The contrast, measured on a running stack (start one with `make run` first).
demo: $(STAMP)
	$(BIN)/rvt demo

# The benchmark suite (bench/, under 10 minutes on 2 cores): starts its own stack on free ports
# and writes bench/results/ (latest.json, latest.md, PNG figures). Needs wrk: installed from
# Debian when missing. `make bench BENCH_ARGS=--quick` for a short run.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q wrk || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q wrk; }; }
	$(BIN)/python -m bench $(BENCH_ARGS)

# The soak (bench/soak.py): 10 minutes of mixed traffic against a stack of its own (loopback
# only); fails if a process's RSS or descriptors, or Redis's memory or keys, grow after the
# warm-up, or if a request fails. Writes bench/results/soak.json and soak.md.
# `make soak SOAK_ARGS=--ci` is the 60-second variant the tests run (tests/soak/).
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
