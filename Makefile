# A newcomer's two commands: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml constraints.txt | sha1sum | cut -c1-12)
KAFKA_VERSION := 4.3.1
KAFKA_LIBS := $(or $(HUB_CACHE_DIR),$(HOME)/.cache/aftersales-hub)/kafka-$(KAFKA_VERSION)/libs
# The test broker's image: Debian's JDK and the harness's own jars (services/lab/harness/container.py).
KAFKA_IMAGE := localhost/aftersales-hub-kafka:$(KAFKA_VERSION)

# The AsyncAPI project's parser (npm), pinned by tests/support/asyncapi/package-lock.json.
ASYNCAPI_TOOLS := tests/support/asyncapi/node_modules/.installed

.PHONY: podman image deploy-tools containers-test kafka-image test-containers test demo bench bench-ingress bench-console chaos soak lint typecheck schemas-check asyncapi-check asyncapi-tools unit integration install kafka-jars postgres prometheus browser clean

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

# Podman with runc and a Debian base image built from Debian's packages (no Docker engine needed).
podman:
	@bash deploy/containers/ensure-podman.sh > /dev/null

# The product image, on a Python base built here from Debian's packages (no registry needed);
# elsewhere `podman build -f deploy/containers/Containerfile .` uses python:3.11-slim.
# --format docker: the OCI format has no HEALTHCHECK field.
comma := ,
IMAGE_NAME ?= localhost/aftersales-hub
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PYTHON_BASE ?= localhost/aftersales-python-base:bookworm
# The host's CA bundle, for pip behind a TLS-inspecting proxy (a build secret: no layer keeps it).
PIP_CA ?= $(firstword $(PIP_CERT) $(wildcard /etc/ssl/certs/ca-certificates.crt))
image: podman
	podman build --quiet --format docker -f deploy/containers/Containerfile.python-base \
		-t $(PYTHON_BASE) deploy/containers > /dev/null
	podman build --format docker --build-arg BASE_IMAGE=$(PYTHON_BASE) \
		--build-arg HUB_VERSION=$(IMAGE_VERSION) \
		$(if $(PIP_CA),--secret id=pip-ca$(comma)src=$(PIP_CA)) \
		-f deploy/containers/Containerfile -t $(IMAGE_NAME):$(IMAGE_VERSION) .

# Go fetches KEDA's CRDs from its module and builds kustomize (once, a few minutes); Maven and
# Java make Strimzi's CRDs with Strimzi's generator. All cached in ~/.cache/aftersales-hub.
deploy-tools: install
	@if ! command -v go > /dev/null && [ ! -x /usr/local/go/bin/go ]; then \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go; \
	fi
	@PYTHONPATH=services $(BIN)/python tests/support/crds.py > /dev/null

# The image under podman: the rendered Deployments played against a broker of their own (a case
# travels intake -> dispatch), and the compose file. `make test` runs them too (it builds the image).
containers-test: kafka-jars image
	$(BIN)/pytest -m containers tests/containers

# Kafka in an image built here (deploy/containers/Containerfile.kafka), for HUB_TEST_BROKER=container.
kafka-image: podman kafka-jars
	@bash deploy/containers/build-kafka-image.sh $(KAFKA_LIBS) $(KAFKA_IMAGE) > /dev/null

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

test: lint typecheck schemas-check asyncapi-check kafka-jars postgres prometheus browser deploy-tools image
	HUB_TEST_POSTGRES_URL=$$(bash deploy/postgres/ensure-postgres.sh) \
	HUB_TEST_PROMETHEUS_DIR=$$(bash deploy/prometheus/ensure-prometheus.sh) $(BIN)/pytest
	@$(MAKE) --no-print-directory test-containers

# The broker-level integration tests once more, on Kafka in a container of the image built here
# (through podman's Docker API, whatever DOCKER_HOST says), then: no test broker container left.
# (Not the store-outage back-off test: it times the store's retries, not the broker's work.)
CONTAINER_TESTS := tests/integration/test_container_broker.py \
	tests/integration/test_intake_on_broker.py tests/integration/test_reliability.py \
	tests/integration/test_security.py \
	--deselect tests/integration/test_reliability.py::test_a_store_outage_pauses_only_its_partition_with_backoff
test-containers: install kafka-image postgres
	@status=0; env -u DOCKER_HOST HUB_TEST_BROKER=container \
		$(BIN)/pytest -p no:cacheprovider $(CONTAINER_TESTS) || status=$$?; \
	left="$$(podman ps -a --filter label=aftersales-hub.test-broker --format '{{.ID}} {{.Status}}')"; \
	if [ -n "$$left" ]; then echo "test broker containers left behind:"; echo "$$left"; exit 1; fi; \
	echo "no test broker container left: podman ps -a --filter label=aftersales-hub.test-broker is empty"; \
	exit $$status

unit: install
	$(BIN)/pytest tests/unit tests/component

demo: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab demo

# The long fault suite (make test runs a bounded one): 10,000 cases at 100 a second;
# CASES=... RATE=... to change.
chaos: kafka-jars postgres
	PYTHONPATH=services $(BIN)/python -m lab chaos --cases $(or $(CASES),10000) \
		--rate $(or $(RATE),100) --instances 2 --postgres $$(bash deploy/postgres/ensure-postgres.sh)

# Every service on one node for 30 minutes at 200 cases/s: RSS must stay flat after a 5-minute
# warm-up and the lag reach zero within 10 s of the end. MINUTES=... RATE=... to change.
soak: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab soak --minutes $(or $(MINUTES),30) --rate $(or $(RATE),200)

# The hub's hop next to raw aiokafka and bare FastStream, e2e latency, Kafka's own reference;
# then what metrics and tracing cost the hop (bare, metrics, traced, one in ten traced), on the
# broker and as the kernel's CPU per record without one (the steadier figure on a busy machine).
# Options: make bench BENCH_ARGS="--rounds 5 --e2e-seconds 120"; --help lists them.
bench: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench $(BENCH_ARGS)
	PYTHONPATH=services $(BIN)/python -m lab.bench.observability
	PYTHONPATH=services $(BIN)/python -m lab.bench.hotpath

# Only the HTTP front door's row: `hub run ingress` under HTTP load (INGRESS_ARGS="--rate 500").
bench-ingress: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench.ingress $(INGRESS_ARGS)

# The console's pages timed with 100,000 dead letters on a real broker; LETTERS=... to change.
bench-console: kafka-jars
	PYTHONPATH=services $(BIN)/python -m lab.bench.console_bench --letters $(or $(LETTERS),100000)

clean:
	rm -rf $(VENV) .hub .mypy_cache .ruff_cache .pytest_cache
