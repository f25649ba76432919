# Dockyard: two commands on a fresh Debian 12 machine, as root.
#   make up    set the machine up, then run `dockyard up` in the foreground
#   make test  set the machine up, then run the whole test suite
.PHONY: up test setup unit integration lint bench bench-scale soak clean

PY := .venv/bin
DOCKYARD_UP_ARGS ?=

setup:
	./scripts/setup.sh

up: setup
	$(PY)/dockyard up $(DOCKYARD_UP_ARGS)

# `make test` first checks the code (ruff, import-linter's layers, mypy --strict on src: ~30 s of CPU without a cache).
# Under `make test` (and CI=true) a part the tests need that is missing fails instead of
# skipping (tests/requirements.py), and so does a failed step of scripts/setup.sh; the machine
# image is built once per content of its build context (scripts/machine-image.sh); the run
# prints its 40 slowest tests and fails when it exceeds its time budget (25 min, override
# with DOCKYARD_TEST_BUDGET_MIN) by more than 20 % (tests/budget.py). Two pytest runs timed
# as one (DOCKYARD_TEST_STARTED): the unit tests on both cores (pytest-xdist, a file per
# worker at a time), then everything else serially (it shares dockerd, bridges and ports);
# both always run, and the target fails when either failed.
test: export DOCKYARD_TEST_REQUIRE_ALL := 1
test: setup
	$(PY)/ruff check src tests
	$(PY)/lint-imports
	$(PY)/mypy src
	./scripts/machine-image.sh
	export DOCKYARD_TEST_STARTED=$$(date +%s); rc=0; \
	$(PY)/pytest tests/unit -p no:cacheprovider -n 2 --dist loadfile --durations=10 || rc=$$?; \
	$(PY)/pytest tests --ignore=tests/unit -p no:cacheprovider --durations=40 || rc=$$?; \
	exit $$rc

unit:
	$(PY)/pytest tests/unit -q -n 2 --dist loadfile

integration: setup
	$(PY)/pytest tests/integration -q

lint:
	$(PY)/ruff check src tests
	$(PY)/lint-imports
	$(PY)/mypy src

# every benchmark in one run (each summary row is dated with its commit and time)
bench: setup
	$(PY)/python bench/run.py

SOAK_MINUTES ?= 10

# not in `make test`: the randomised loops of the tests marked `soak` run long from fresh seeds
# (tests/budget.py; DY_SEED replays one), then random kill -9 of agent and server during
# create/delete/resize/snapshot for SOAK_MINUTES (tests/soak.py)
soak: export DOCKYARD_SOAK := 1
soak: setup
	$(PY)/pytest tests -m soak -p no:cacheprovider --durations=10
	$(PY)/python -m tests.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf .venv build dist src/*.egg-info

# not in `make test`: hollow agents (bench/hollow.py) against one server at 100, 1,000 and
# 3,000 hosts on SQLite and PostgreSQL; results appended to bench/scale.jsonl
SCALE_SIZES ?= 100 1000 3000
bench-scale: setup
	$(PY)/pip install -q -e '.[dev,bench]'
	for n in $(SCALE_SIZES); do for db in sqlite postgres; do \
	  flock -x /tmp/dockyard-heavy.lock timeout 900 $(PY)/python bench/hollow.py --hosts $$n \
	    --db $$db --launches 300 --out bench/scale.jsonl || exit 1; done; done
	$(PY)/python bench/scale_report.py bench/scale.jsonl
