# mlcd: `make demo` runs the full lifecycle demo, `make test` runs lint and the whole test suite.
# Both create .venv and install everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install lint test test-fast durations demo sweep bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs on pytest-xdist workers, one per core plus a waiting lane that takes only the
# tests that mostly wait (tests/lanes.py, from tests/cpu.json; PYTEST_WORKERS=0: one process);
# tests marked xdist_group run on one worker. --no-loadscope-reorder: work is handed out in the
# order tests/conftest.py sorts it (the Ray group, then longest first by tests/durations.json),
# not biggest group first. It prints its wall time and the 25 slowest tests.
# compileall first: with PYTHONDONTWRITEBYTECODE set (as on our runners) every CLI subprocess
# of the suite would otherwise compile mlcd from source again.
PYTEST_WORKERS ?= auto
PYTEST = $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# Lint runs beside pytest, not before it: the suite leaves part of a core idle (tests that wait
# on servers and timers), and mypy without a cache needs about 35 s of one. Its output comes
# after pytest's; make test fails if either failed.
LINT_LOG = .lint.log

test: $(STAMP)
	$(BIN)/python -m compileall -q src
	@start=$$(date +%s); rm -f $(LINT_LOG).rc; \
	( $(MAKE) --no-print-directory lint > $(LINT_LOG) 2>&1; echo $$? > $(LINT_LOG).rc ) & lint=$$!; \
	$(PYTEST) --durations=25 $(PYTEST_ARGS); status=$$?; \
	echo "make test: pytest took $$(( $$(date +%s) - start )) s wall time (exit $$status)"; \
	wait $$lint; cat $(LINT_LOG); lint_status=$$(cat $(LINT_LOG).rc); rm -f $(LINT_LOG) $(LINT_LOG).rc; \
	echo "make test: lint (ruff, mypy, lint-imports) exit $$lint_status, $$(( $$(date +%s) - start )) s in all"; \
	[ $$status -eq 0 ] && [ "$$lint_status" = 0 ]

# The quick tier: every test that is not marked slow and took at most 1.5 s in the recorded
# full run (tests/durations.json; tests/conftest.py marks the others slow).
test-fast: $(STAMP)
	$(BIN)/python -m compileall -q src
	$(PYTEST) -x -m "not slow" --durations=10 $(PYTEST_ARGS)

# The whole suite, writing each test's time into tests/durations.json and its CPU time into
# tests/cpu.json (commit both when the suite's shape changed: they decide the work order, the
# waiting lane and the quick tier).
durations: $(STAMP)
	$(BIN)/python -m compileall -q src
	$(PYTEST) --store-durations $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

# A 3x3 grid sweep of the churn model (learning rate x depth, 2 workers) in .sweep/; not part of demo.
sweep: $(STAMP)
	$(BIN)/python examples/sweep.py $(SWEEP_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build .demo .sweep .pytest_cache .mypy_cache .ruff_cache
