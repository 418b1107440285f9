# shoplake — the two commands a new machine needs:
#   make demo   a week of generated exports loaded into ./lake, one day re-run
#   make test   unit, CLI and property tests, then the S3 integration tests
#               against LocalStack and MinIO (installed and started here)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Builds are cached outside the clone so CI and later runs reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/shoplake/target
SHOPLAKE := $(CARGO_TARGET_DIR)/debug/shoplake

DEMO_FROM ?= 2019-04-01
DEMO_TO ?= 2019-04-07
DEMO_ROWS ?= 10000
DEMO_RERUN ?= 2019-04-03

.PHONY: build demo test unit-test integration-test services-start services-stop bench clean-demo

# Always the whole workspace: one feature set, one build of the dependencies.
build:
	cargo build --workspace --bins

demo: export RUST_LOG ?= warn
demo: build
	@echo "== generating $(DEMO_FROM)..$(DEMO_TO), $(DEMO_ROWS) shops, a few malformed lines =="
	$(SHOPLAKE) generate --from $(DEMO_FROM) --to $(DEMO_TO) --rows $(DEMO_ROWS) --dirty --out ./data/raw
	@echo "== loading each day into ./lake/shopify_configuration =="
	@for day in $$(seq 0 6); do \
	  date=$$(date -d "$(DEMO_FROM) + $$day day" +%F); \
	  $(SHOPLAKE) ingest --date $$date; \
	done
	@echo "== re-running $(DEMO_RERUN): nothing changes, no new version =="
	$(SHOPLAKE) ingest --date $(DEMO_RERUN)
	@echo "== summary =="
	$(SHOPLAKE) history --limit 10
	$(SHOPLAKE) query --sql "SELECT export_date, count(*) AS shops, sum(CAST(has_specific_prefix AS INT)) AS specific_prefix FROM shopify_configuration GROUP BY export_date ORDER BY export_date"

clean-demo:
	rm -rf ./data/raw ./lake

test: unit-test integration-test

unit-test:
	cargo test --workspace --lib --bins --test cli --test hardening --test operations --test adoption --test property --test audit

integration-test:
	./integration-tests/run.sh

services-start:
	./localstack/services.sh start all

services-stop:
	./localstack/services.sh stop all

bench: build
	./bench/run.sh
