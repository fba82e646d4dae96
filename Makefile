# Two entry points for newcomers: `make demo` and `make test`.
# Both install what is missing into .venv (uv is bootstrapped with pip), then run.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
RUN_ENV := DO_NOT_TRACK=true PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true \
	UV_COMPILE_BYTECODE=1 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120

.PHONY: install browser demo test lock benchmark clean

install: $(STAMP)

# The HTML report is tested in a real headless browser: Debian's chromium and chromedriver.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		echo "installing Debian's chromium and chromium-driver for the report's browser test"; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(RUN_ENV) $(UV) pip install --quiet --python $(VENV)/bin/python -r requirements.lock
	$(RUN_ENV) $(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/churn demo

test: $(STAMP) browser
	$(RUN_ENV) $(VENV)/bin/python -m pytest

# Re-pin the dependencies after editing pyproject.toml (plain name==version lines, no URLs).
lock:
	$(UV) pip compile pyproject.toml --extra test --python 3.11 --no-header --no-annotate -o requirements.lock

benchmark: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/python benchmarks/bench_features.py --repeat 5

clean:
	rm -rf .churn
