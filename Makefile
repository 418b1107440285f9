# shoplake — the two commands a new machine needs:
#   make demo   a week of generated exports of every table loaded into ./lake,
#               one day re-run, the two tables joined
#   make test   every test tier below, with what each needs installed and
#               started here (LocalStack, MinIO, Airflow, Prometheus, Spark)
#
# The tiers, each runnable alone:
#   make unit-test         unit, CLI, hardening, operations, audit, property tests
#   make integration-test  S3 scenarios against LocalStack and MinIO (host processes)
#   make integration-test-docker   the same through testcontainers (needs Docker)
#   make airflow-test      the DAG, run for real with `airflow dags test`
#   make cron-test         the cron wrapper (lock, date, log, exit code)
#   make metrics-test      metrics through real node_exporter and Pushgateway
#   make interop-test      Spark 3.5 + Delta 3.3 reading and writing our tables
#   make lineage-test      OpenLineage events against openlineage-python's generated classes (and
#                          the pinned JSON schemas, given a copy); file and HTTP transports
#   make security-test     least-privilege roles on MinIO, encryption at rest on MinIO
#                          and LocalStack, the CloudFormation stack deployed to LocalStack
#   make catalog-test      Glue registration (moto) read by Trino 476 from MinIO: docs/catalogs.md
#   make lint              rustfmt, clippy, actionlint, hadolint, shellcheck, ruff,
#                          cfn-lint, cargo-deny (licenses, bans, sources), the docs'
#                          links and no path leaving the repository (tools/check-docs,
#                          tools/check-paths), and `shoplake validate` on tables/
#                          (make validate-tables)
# and: make release (tarball, CycloneDX SBOM, SHA-256s), make bench (bench/RESULTS.md),
#      make bench-profiles (how [profile.release] was chosen: bench/PROFILES.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Builds are cached outside the clone so CI and later runs reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/shoplake/target
SHOPLAKE := $(CARGO_TARGET_DIR)/debug/shoplake

DEMO_FROM ?= 2019-04-01
DEMO_TO ?= 2019-04-07
DEMO_ROWS ?= 10000
DEMO_RERUN ?= 2019-04-03

.PHONY: build demo test unit-test integration-test integration-test-docker airflow-test cron-test \
	metrics-test interop-test security-test lineage-test catalog-test fuzz fuzz-smoke lint lint-cheap validate-tables release services-start services-stop bench \
	bench-profiles clean-demo

# Always the whole workspace: one feature set, one build of the dependencies.
build:
	cargo build --workspace --bins

demo: export RUST_LOG ?= warn
demo: build
	@echo "== the tables shoplake knows (tables/) =="
	$(SHOPLAKE) tables
	@echo "== generating $(DEMO_FROM)..$(DEMO_TO) of every table, $(DEMO_ROWS) shops, a few malformed lines =="
	$(SHOPLAKE) generate --all-tables --from $(DEMO_FROM) --to $(DEMO_TO) --rows $(DEMO_ROWS) --dirty --out ./data/raw
	@echo "== loading each day of every table into ./lake =="
	@for day in $$(seq 0 6); do \
	  date=$$(date -d "$(DEMO_FROM) + $$day day" +%F); \
	  $(SHOPLAKE) ingest --all-tables --date $$date; \
	done
	@echo "== re-running $(DEMO_RERUN): nothing changes, no new version =="
	$(SHOPLAKE) ingest --all-tables --date $(DEMO_RERUN)
	@echo "== summary =="
	$(SHOPLAKE) history --limit 10
	$(SHOPLAKE) query --sql "SELECT export_date, count(*) AS shops, sum(CAST(has_specific_prefix AS INT)) AS specific_prefix FROM shopify_configuration GROUP BY export_date ORDER BY export_date"
	@echo "== the two tables joined: searches and revenue by install channel on $(DEMO_TO) =="
	$(SHOPLAKE) query --sql "SELECT c.install_channel, count(*) AS shops, sum(u.searches) AS searches, sum(u.revenue) AS revenue FROM shopify_configuration c JOIN shopify_usage_daily u ON u.shop_id = c.id AND u.usage_date = c.export_date WHERE c.export_date = DATE '$(DEMO_TO)' GROUP BY c.install_channel ORDER BY shops DESC"
	@echo "== Shopify's own exports: the admin Products CSV by status, the Bulk Operations variants by their product's type =="
	$(SHOPLAKE) query --sql "SELECT status, count(DISTINCT handle) AS products, count(*) AS variants FROM shopify_products WHERE export_date = DATE '$(DEMO_TO)' GROUP BY status ORDER BY products DESC"
	$(SHOPLAKE) query --sql "SELECT p.product_type, count(*) AS variants, sum(v.inventory_quantity) AS inventory FROM shopify_bulk_variants v JOIN shopify_bulk_products p ON p.id = v.product_id AND p.export_date = v.export_date WHERE v.export_date = DATE '$(DEMO_TO)' GROUP BY p.product_type ORDER BY variants DESC"

clean-demo:
	rm -rf ./data/raw ./lake

test: unit-test integration-test airflow-test cron-test metrics-test interop-test security-test lineage-test catalog-test \
	fuzz-smoke

unit-test:
	cargo test --workspace --lib --bins --test local --test corpus

# The parsers of untrusted input under cargo fuzz (nightly; docs/fuzzing.md):
# every target for FUZZ_SECONDS each (default 60), or a few seconds each.
fuzz:
	./tools/fuzz.sh

fuzz-smoke:
	FUZZ_SECONDS=$${FUZZ_SMOKE_SECONDS:-5} ./tools/fuzz.sh

integration-test:
	./integration-tests/run.sh

# Without SHOPLAKE_IT_*: the harness starts the services with testcontainers.
integration-test-docker:
	cargo build --workspace --bins
	env -u SHOPLAKE_IT_LOCALSTACK_ENDPOINT -u SHOPLAKE_IT_MINIO_ENDPOINT \
	  SHOPLAKE_BIN=$(SHOPLAKE) cargo test --workspace --test s3 -- --test-threads 2

airflow-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./deploy/airflow/test.sh

cron-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./deploy/cron/test.sh

metrics-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./deploy/prometheus/test.sh

interop-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./interop/run.sh

# Validates every event kind with openlineage-python's generated classes, and
# against the OpenLineage JSON schemas pinned in lineage/spec.lock.json only
# when a copy is provided (none on a fresh machine: that layer is skipped),
# with an HTTP receiver of its own: lineage/README.md.
lineage-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./lineage/test.sh

# Its own MinIO (built-in KMS) and LocalStack (S3, KMS, IAM, STS,
# CloudFormation) on free ports: docs/security.md.
security-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./deploy/aws/test.sh

# moto (Glue), MinIO and Trino 476 on free ports of its own: docs/catalogs.md.
catalog-test: build
	SHOPLAKE_BIN=$(SHOPLAKE) ./catalogs/test.sh

# Formatting, clippy (its own check build of every dependency: see
# docs/ci.md for its cost), then the other linters.
lint: lint-cheap validate-tables
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Every table definition of tables/ through the pipeline loads use (exit 2 on any problem).
validate-tables: build
	$(SHOPLAKE) validate --tables tables

# tools/lint.sh: also cfn-lint (deploy/aws/*.cfn.yaml) and
# `cargo deny check licenses bans sources` (deny.toml; advisories run in ci.yml).
lint-cheap:
	cargo fmt --all --check
	./tools/lint.sh

release:
	./tools/release.sh

services-start:
	./localstack/services.sh start all

services-stop:
	./localstack/services.sh stop all

# The release binary is what users run, so it is what the bench measures.
bench:
	cargo build --release --locked --bin shoplake
	SHOPLAKE_BIN=$(CARGO_TARGET_DIR)/release/shoplake ./bench/run.sh

# Release profile candidates built and raced (one cold release build each).
bench-profiles:
	./bench/profiles.sh
