# The two commands: `make demo` (set up everything, run the pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help setup demo monitoring dashboard smoke test test-fast broker-start broker-stop broker-status broker-wipe check upkeep \
	cluster-start cluster-stop cluster-status spark-cluster-start spark-cluster-stop spark-cluster-status kafka-cluster-start kafka-cluster-stop kafka-cluster-status

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-21s %s\n", $$1, $$2}'

$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(INSTALLED)

setup: $(INSTALLED)  ## Virtual environment, pinned packages, Kafka broker jars
	$(BIN)/python -m lakehouse.local.kafka_broker fetch

broker-start: setup  ## Start the local Kafka broker (KRaft) on localhost:9092
	$(BIN)/python -m lakehouse.local.kafka_broker start

broker-stop:  ## Stop the local Kafka broker
	$(BIN)/python -m lakehouse.local.kafka_broker stop

broker-status:  ## Say whether the local broker runs
	$(BIN)/python -m lakehouse.local.kafka_broker status

broker-wipe: broker-stop  ## Stop the broker and delete its topics and data
	$(BIN)/python -m lakehouse.local.kafka_broker wipe

cluster-start: setup  ## Start the local cluster: object store (needs LAKEHOUSE_S3_SECRET_KEY), Spark, three Kafka nodes
	$(BIN)/python -m lakehouse.local.cluster start

cluster-stop:  ## Stop the local cluster (Kafka, Spark, object store)
	$(BIN)/python -m lakehouse.local.cluster stop

cluster-status:  ## Say which parts of the local cluster run
	$(BIN)/python -m lakehouse.local.cluster status

spark-cluster-start: setup  ## Start a local Spark standalone cluster (a master, [cluster] spark_workers workers)
	$(BIN)/python -m lakehouse.local.spark_cluster start

spark-cluster-stop:  ## Stop the local Spark standalone cluster
	$(BIN)/python -m lakehouse.local.spark_cluster stop

spark-cluster-status:  ## Say whether the local Spark standalone cluster runs
	$(BIN)/python -m lakehouse.local.spark_cluster status

kafka-cluster-start: setup  ## Start a local three-node Kafka cluster (KRaft); prints its bootstrap string
	$(BIN)/python -m lakehouse.local.kafka_cluster start

kafka-cluster-stop:  ## Stop the local Kafka cluster (every node at once)
	$(BIN)/python -m lakehouse.local.kafka_cluster stop

kafka-cluster-status:  ## Say which nodes of the local Kafka cluster run, and its bootstrap string
	$(BIN)/python -m lakehouse.local.kafka_cluster status

check: setup  ## Run every setup check, Spark included, creating what is missing
	$(BIN)/python setup_utils.py --fix --spark

demo: setup  ## Set up everything, run the whole pipeline with a live view (ARGS="--fresh", "--rate 10"...)
	$(BIN)/python -m lakehouse.ops.demo $(ARGS)

monitoring: setup  ## Prometheus over the jobs' /metrics with the alert rules (http://127.0.0.1:9090; apt-get install prometheus)
	$(BIN)/python -m lakehouse.ops.prometheus $(ARGS)

dashboard: setup  ## The web dashboard of the tables (http://127.0.0.1:8501 by default; ARGS="--port 8600"...)
	$(BIN)/python streamlit_dashboard.py $(ARGS)

smoke: broker-start  ## Send five sales through Kafka into Delta and read them back (quick check)
	$(BIN)/python setup_utils.py --fix
	$(BIN)/python -m lakehouse.ops.smoke

upkeep: setup  ## Bronze retention, OPTIMIZE and VACUUM of every table (safe while the streams run)
	$(BIN)/python -m lakehouse.ops.upkeep

# The configuration reference needs only the standard library: no set-up first.
CONFIGURATION_MD ?= docs/CONFIGURATION.md
.PHONY: docs
docs:  ## Write docs/CONFIGURATION.md (every setting) from the settings schema
	$(PYTHON) -m lakehouse.platform.config.docs --output $(CONFIGURATION_MD)

# Test files run in parallel worker processes (pytest-xdist), one file per worker at a time, slowest first
# (tests/conftest.py): a module's fixtures are built once. The folder is the tier: tests/unit, tests/integration
# (real Delta tables, the shared broker), tests/system (processes of their own).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup  ## Run every test: unit, integration, system (starts a local broker for the session if none is running)
	$(PYTEST)

test-fast: setup  ## The unit tests (tests/unit): no Delta table, no broker, no other process; the edit loop
	$(PYTEST) tests/unit

# The linters (requirements-dev.txt), installed on top of the pinned packages the first time. Their settings are in
# pyproject.toml: ruff's rules F (pyflakes), E (pycodestyle's errors) and I (import order), and mypy's.
DEV_INSTALLED := $(VENV)/.dev-installed
$(DEV_INSTALLED): requirements-dev.txt $(INSTALLED)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(DEV_INSTALLED)

.PHONY: lint
lint: $(DEV_INSTALLED)  ## ruff (pyflakes, pycodestyle errors, import order) and mypy on lakehouse/
	$(BIN)/ruff check lakehouse tests bench *.py
	$(BIN)/python -m mypy lakehouse
