# Every target sets up .venv itself: nothing to install by hand beforehand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv constraints demo up test test-quick test-mutation test-compat test-alerts test-hosts lint personal-fields docs bench bench-quick chaos clean

venv: $(STAMP)

# constraints.txt pins every dependency (dev and server extras included); regenerate it with
# `make constraints` after changing the dependencies in pyproject.toml.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v uv >/dev/null 2>&1; then UV=uv; \
	 elif $(BIN)/python -m pip install -q uv >/dev/null 2>&1; then UV=$(BIN)/uv; \
	 else UV=; fi; \
	 if [ -n "$$UV" ]; then $$UV pip install -q --python $(BIN)/python -c constraints.txt -e '.[dev]'; \
	 else $(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'; fi
	@touch $(STAMP)

constraints:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v uv >/dev/null 2>&1; then UV=uv; \
	 else $(BIN)/python -m pip install -q uv && UV=$(BIN)/uv; fi; \
	 $$UV pip compile -q pyproject.toml --extra dev --extra server --extra docs --universal \
	   --python-version 3.11 -o constraints.txt

demo: venv
	$(BIN)/python -m worker.devtools.demo

# The local stack in the foreground until Ctrl-C; it prints the IDV_ variables for another
# shell. `make up UP_ARGS="--dir .cache/stack"` keeps Redis data across restarts.
UP_ARGS ?=
up: venv
	$(BIN)/idv-worker dev up $(UP_ARGS)

# The suite in parallel: one test process per core (pytest-xdist; TEST_WORKERS=0 runs it in
# this process), each with its own redis-server, S3 API and emulator on free ports; a module
# stays on one process (its module fixtures start once) and the slow modules start first.
# Then the tests marked `serial` (they measure time or need the machine to themselves), alone.
TEST_WORKERS ?= auto
PYTEST_PARALLEL = $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: venv
	$(PYTEST_PARALLEL) -m "not serial" $(TEST_ARGS)
	$(BIN)/python -m pytest -q -m serial $(TEST_ARGS)

# Pure logic only (tests/unit: no servers), for the edit-test loop; test by test over the
# processes (no module fixture here is worth keeping a module together).
test-quick: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist load tests/unit $(TEST_ARGS)

# Mutation testing of the security- and money-critical modules (docs/development.md, "Mutation
# testing"): each mutant is run against that module's fast tests; prints the kill rate per
# module and fails below 90 % or on a survivor that is neither killed nor explained.
# MUTATION_ARGS="--only confine --jobs 1" narrows it.
MUTATION_ARGS ?=
test-mutation: venv
	nice $(BIN)/python -m tests.mutation.runner $(MUTATION_ARGS)

# The storage adapter against every S3-compatible store available: moto, and s3rver (a second,
# independent implementation on Node.js) installed from the npm registry into .cache/s3rver.
S3RVER_DIR := .cache/s3rver
S3RVER     := $(S3RVER_DIR)/node_modules/s3rver/bin/s3rver.js
COMPAT_TESTS := tests/integration/storage tests/integration/evidence/test_uploads.py

$(S3RVER):
	@command -v npm >/dev/null 2>&1 || { echo "make test-compat needs Node.js and npm"; exit 1; }
	npm install --prefix $(S3RVER_DIR) --no-audit --no-fund --silent s3rver@3

test-compat: venv $(S3RVER)
	$(BIN)/python -m pytest -q -rs $(COMPAT_TESTS)

# The alerting rules under promtool: `check rules`, then the unit test of every alert
# (deploy/prometheus/alerts_test.yml). promtool comes with Debian's prometheus package, installed
# here where apt-get exists and promtool is missing.
PROMTOOL ?= promtool
ALERT_RULES := deploy/prometheus/alerts.yml
ALERT_TESTS := deploy/prometheus/alerts_test.yml

test-alerts:
	@command -v $(PROMTOOL) >/dev/null 2>&1 || { 	  command -v apt-get >/dev/null 2>&1 || { echo "make test-alerts needs promtool (Debian: apt-get install prometheus)"; exit 1; }; 	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; 	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	$(PROMTOOL) check rules $(ALERT_RULES)
	$(PROMTOOL) test rules $(ALERT_TESTS)

# Several hosts on one machine (network namespaces; needs root, ~8 minutes): partitions while
# batch rows and onboarding flows run. Exits non-zero if anything was lost, billed twice or
# over quota; prints a table per scenario. See docs/operating/network-faults.md.
test-hosts: venv
	IDV_HOSTS_TIER=1 $(BIN)/python -m pytest -q -rs tests/hosts

lint: venv
	$(BIN)/ruff check worker tasks tests bench
	$(BIN)/ruff format --check worker tasks tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The redaction denylist of personal fields, generated from the models' markers.
personal-fields: venv
	$(BIN)/python -m worker.devtools.personal_fields

# The documentation site: regenerate docs/reference/ from the code, then build with --strict
# (a broken link or a page missing from the nav fails). The docs extra is installed on demand.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	@if command -v uv >/dev/null 2>&1; then UV=uv; \
	 else $(BIN)/python -m pip install -q uv && UV=$(BIN)/uv; fi; \
	 $$UV pip install -q --python $(BIN)/python -c constraints.txt -e '.[dev,docs]'
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m worker.devtools.docsgen
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

BENCHES := client limiter evidence batch ledger replication

# Each benchmark prints one JSON object on its last line; run them one at a time so they
# do not compete for the two cores. IDV_MODE=production requires IDV_SUBJECT_KEY: benchmarks
# store no real data, a fixed key does.
bench bench-quick chaos: export IDV_SUBJECT_KEY ?= bench-subject-key-not-secret
bench: venv
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

bench-quick: venv
	@for b in $(BENCHES); do echo "== bench/$$b.py --quick"; $(BIN)/python bench/$$b.py --quick || exit 1; done

# The chaos run (about 10 minutes per Redis restart kind); exits non-zero if anything was lost
# or billed twice. A reduced run is part of `make test`.
chaos: venv
	$(BIN)/python bench/chaos.py --redis graceful
	$(BIN)/python bench/chaos.py --redis crash

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info .cache
