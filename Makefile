# The two commands of a newcomer: `make demo` (install + run the build end to end on digits)
# and `make test` (install + the whole test suite). Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)
export MLOPS_HOME ?= $(CURDIR)/.mlops
export BENTOML_HOME ?= $(MLOPS_HOME)/bentoml
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: install demo loop-demo loop-demo-ui walkthrough-env test test-fast dev serve lint bench clean browser-deps bench-deps \
	docker-engine deploy-up deploy-down

install: $(VENV)/.installed

# torch first, pinned: the local CPU wheel. Any other torch spec pulls gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) -m mlops_assets.tools.demo

# The monitoring loop closing on the real daemon: build, serve, clean then drifted traffic, drift sensor,
# retraining, gate, new version served; about 4 minutes. Stops everything it started (Ctrl-C too).
loop-demo: install
	$(PY) -m mlops_assets.tools.loop_demo $(LOOP_DEMO_ARGS)

# The finished loop demo's UI again, over the instance it left in .mlops/loop-demo (its settings saved there).
loop-demo-ui: install
	$(PY) -m mlops_assets.tools.loop_demo --reopen $(LOOP_DEMO_ARGS)

# The monitoring walkthrough's settings (docs/operating.md) in ./.env, which every process started here loads (mlops_assets/core/common/settings.py;
# Dagster's CLI reads it too): a new terminal is never wrong. Absolute paths, five-minute windows from the current
# one (the first monitored traffic), so the per-window plots start where the traffic does, not at midnight.
walkthrough-env:
	@printf '%s\n' "# written by make walkthrough-env: loaded by every process started in $(CURDIR)" \
		"DAGSTER_HOME=$(CURDIR)" "MLOPS_HOME=$(CURDIR)/.mlops" "BENTOML_HOME=$(CURDIR)/.mlops/bentoml" \
		"MLOPS_DATASET_KIND=image_folder" "MLOPS_IMAGE_FOLDER=$(CURDIR)/.mlops/images" \
		"MLOPS_IMAGE_HEIGHT=8" "MLOPS_IMAGE_WIDTH=8" "MLOPS_PROFILE_CRON=*/5 * * * *" \
		"MLOPS_MONITOR_START=$$(date -u -d @$$(( $$(date +%s) / 300 * 300 )) +%Y-%m-%d-%H:%M)" > .env
	@echo "wrote $(CURDIR)/.env:" && cat .env

test: install browser-deps bench-deps
	$(PY) -m pytest -q

# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser-deps:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "chromium is not installed and this is not root: the browser tests will skip"

# wrk, the load generator of the serving benchmark.
bench-deps:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends wrk >/dev/null; } || \
		echo "wrk is not installed and this is not root: install it to run benchmarks/bench_serving.py"

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The Dagster UI on 3000 and the Bento service on 3001: the same ports as deploy/ and the README.
# Both run under a supervisor: Ctrl-C or SIGTERM stops the whole server within seconds (SIGKILL after 10 s).
SUPERVISE := $(PY) -m mlops_assets.tools.supervise --grace 10 --
dev: install
	$(SUPERVISE) $(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

serve: install
	$(SUPERVISE) $(VENV)/bin/bentoml serve bentos.service:ClassifierService --host 127.0.0.1 --port 3001

# The production stack of deploy/ in Docker (docker-compose 1.29 or Compose v2): PostgreSQL, the gRPC
# code server, webserver, daemon (runs in their own containers), Bento service. Images build from a
# wheelhouse prepared on the host; with no image registry reachable, from a local debootstrap base.
# deploy-up first checks the host ports (DAGSTER_WEBSERVER_PORT, MLOPS_BENTO_PORT) and stops if one is taken.
# deploy-down removes the containers (run containers too), the network and the volumes;
# KEEP_DATA=1 make deploy-down keeps the volumes. See deploy/README.md.
docker-engine:
	deploy/scripts/start_engine.sh

deploy-up:
	deploy/scripts/stack.sh up

deploy-down:
	deploy/scripts/stack.sh down

lint: install
	$(VENV)/bin/ruff check .

bench: install bench-deps
	$(PY) -m benchmarks

clean:
	rm -rf .mlops
