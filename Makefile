# A newcomer's two commands: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml constraints.txt | sha1sum | cut -c1-12)
KAFKA_LIBS := $(or $(HUB_CACHE_DIR),$(HOME)/.cache/aftersales-hub)/kafka-4.3.1/libs

# The AsyncAPI project's parser (npm), pinned by tests/support/asyncapi/package-lock.json.
ASYNCAPI_TOOLS := tests/support/asyncapi/node_modules/.installed

.PHONY: test demo bench bench-ingress bench-console chaos lint typecheck schemas-check asyncapi-check asyncapi-tools unit integration install kafka-jars postgres prometheus browser clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

kafka-jars: install
	PYTHONPATH=services $(BIN)/python -c "from lab.harness.kafka import ensure_kafka_jars; print(ensure_kafka_jars())"

postgres:
	@bash deploy/postgres/ensure-postgres.sh > /dev/null

# Headless Chromium and its WebDriver from Debian, for the console's browser tests (run as root).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

# Debian's prometheus package: promtool checks deploy/prometheus/, a private server scrapes a test.
prometheus:
	@bash deploy/prometheus/ensure-prometheus.sh > /dev/null

lint: install
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests

typecheck: install
	$(BIN)/mypy

schemas-check: install
	$(BIN)/hub schemas check

# --ignore-scripts: the parser needs no install scripts (one only reports telemetry).
$(ASYNCAPI_TOOLS): tests/support/asyncapi/package.json tests/support/asyncapi/package-lock.json
	cd tests/support/asyncapi && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

asyncapi-tools: $(ASYNCAPI_TOOLS)

# The documents match the declarations, and the AsyncAPI parser finds no error in them.
asyncapi-check: install $(ASYNCAPI_TOOLS)
	$(BIN)/hub asyncapi check
	node tests/support/asyncapi/validate.mjs docs/asyncapi/*.yaml

test: lint typecheck schemas-check asyncapi-check kafka-jars postgres prometheus browser
	HUB_TEST_POSTGRES_URL=$$(bash deploy/postgres/ensure-postgres.sh) \
	HUB_TEST_PROMETHEUS_DIR=$$(bash deploy/prometheus/ensure-prometheus.sh) $(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit tests/component

demo: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab demo

# The long fault suite (make test runs a bounded one): 10,000 cases; CASES=... to change.
chaos: kafka-jars postgres
	PYTHONPATH=services $(BIN)/python -m lab chaos --cases $(or $(CASES),10000) \
		--instances 2 --postgres $$(bash deploy/postgres/ensure-postgres.sh)

# The hub's hop next to raw aiokafka and bare FastStream, e2e latency, Kafka's own reference;
# then what metrics and tracing cost the hop (bare, metrics, traced, one in ten traced).
# Options: make bench BENCH_ARGS="--rounds 5 --e2e-seconds 120"; --help lists them.
bench: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench $(BENCH_ARGS)
	PYTHONPATH=services $(BIN)/python -m lab.bench.observability

# Only the HTTP front door's row: `hub run ingress` under HTTP load (INGRESS_ARGS="--rate 500").
bench-ingress: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench.ingress $(INGRESS_ARGS)

# The console's pages timed with 100,000 dead letters on a real broker; LETTERS=... to change.
bench-console: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench.console_bench --letters $(or $(LETTERS),100000)

clean:
	rm -rf $(VENV) .hub .mypy_cache .ruff_cache .pytest_cache
