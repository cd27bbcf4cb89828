# tagqa: the two promised commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/.tagqa
PORT ?= 3000

export DAGSTER_HOME ?= $(STATE)/dagster
export YOLO_CONFIG_DIR ?= $(STATE)/ultralytics
export YOLO_OFFLINE := 1
export MPLCONFIGDIR ?= $(STATE)/matplotlib

NATIVE_SOURCES := setup.py edge_runtime/_letterbox.c
INSTALL_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt $(NATIVE_SOURCES) | sha256sum | cut -c1-12)

.PHONY: setup run test test-quick screenshots demo broker system-deps compiler labelstudio-install labelstudio clean-state

## setup: create the venv, install tagqa with its pinned dependencies, write tagqa.env (commented) and the Dagster instance config
setup: $(INSTALL_STAMP) tagqa.env $(DAGSTER_HOME)/dagster.yaml
	@# A .env from an older checkout: Dagster's CLI would load it over the shell; move tagqa's settings out.
	@if grep -qsE '^(TAGQA_|LABEL_STUDIO_)' .env; then $(BIN)/tagqa settings init; fi

$(INSTALL_STAMP): pyproject.toml constraints.txt $(NATIVE_SOURCES) | compiler
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# The project's settings file: every line commented (defaults live in tagqa_assets/settings.py).
# Not .env: Dagster's CLI loads ./.env over the shell, tagqa reads tagqa.env under it.
tagqa.env: | $(INSTALL_STAMP)
	$(BIN)/tagqa settings init

## compiler: a C compiler for the edge runtime's native letterbox kernel (optional for a device, used by the tests)
compiler:
	@command -v cc >/dev/null 2>&1 || { test "$$(id -u)" = 0 && apt-get update && apt-get install -y gcc; } \
		|| echo "no C compiler: the edge runtime uses its numpy letterbox (same pixels, slower)"

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster/local/dagster.yaml $@

## demo: write a small synthetic demo set into the store, only when raw/ is empty
# The local demo runs the multi-class path: two defect kinds, unless the user chose a taxonomy
# (in the shell or in tagqa.env: the shell's value wins, as everywhere).
DEMO_DEFECT_CLASSES := scratch,dent
demo run: export TAGQA_DEFECT_CLASSES ?= $(or $(shell sed -n 's/^TAGQA_DEFECT_CLASSES=//p' tagqa.env 2>/dev/null | tail -n 1),$(DEMO_DEFECT_CLASSES))
demo: setup
	$(BIN)/tagqa demo --if-empty

## run: set up, seed the demo set if the store is empty, start Mosquitto, a local edge device and Dagster on 127.0.0.1:$(PORT)
run: setup demo broker
	BIN=$(BIN) PORT=$(PORT) STATE=$(STATE) deploy/local/run.sh

## broker: Mosquitto for the local devices (installed only when missing; needs root on Debian)
broker:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { apt-get update && apt-get install -y mosquitto; }

## system-deps: services the tests use (installed only when missing; needs root on Debian)
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { apt-get update && apt-get install -y mosquitto; }
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

## test: set up, install what the tests need, run the whole suite
test: setup system-deps labelstudio-install
	$(BIN)/python -m pytest

## test-quick: the tests not marked slow (no training runs, no Label Studio, no Chromium, no dagster dev, no PostgreSQL)
test-quick: setup broker
	$(BIN)/python -m pytest -m 'not slow'

## screenshots: refresh the README's images (docs/img/*.png) from a real dagster dev, a real make run stack taken to its first result (about 15 min), and Chromium
screenshots: setup system-deps
	SCREENSHOTS_DIR=$(CURDIR)/docs/img $(BIN)/python -m pytest tests/test_ui.py tests/test_first_result.py -q

LABEL_STUDIO_VERSION := 1.23.2
LABEL_STUDIO_VENV := $(STATE)/labelstudio/venv
LABEL_STUDIO_STAMP := $(LABEL_STUDIO_VENV)/.installed-$(LABEL_STUDIO_VERSION)

LABEL_STUDIO_TEMPLATE := $(STATE)/labelstudio/template/label_studio.sqlite3

## labelstudio-install: Label Studio in its own venv under .tagqa/ (about 1 GB, a minute; instant when present)
labelstudio-install: $(LABEL_STUDIO_STAMP) $(LABEL_STUDIO_TEMPLATE)

$(LABEL_STUDIO_STAMP):
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install --quiet --upgrade pip
	$(LABEL_STUDIO_VENV)/bin/pip install --quiet label-studio==$(LABEL_STUDIO_VERSION)
	rm -f $(LABEL_STUDIO_VENV)/.installed-* && touch $@

# A migrated empty database that start.sh copies into new data folders (first starts skip ~20 s of migrations).
$(LABEL_STUDIO_TEMPLATE): $(LABEL_STUDIO_STAMP) deploy/labelstudio/prepare_template.py
	rm -rf $(@D).tmp && mkdir -p $(@D).tmp
	LABEL_STUDIO_BASE_DATA_DIR=$(@D).tmp $(LABEL_STUDIO_VENV)/bin/python deploy/labelstudio/prepare_template.py
	rm -rf $(@D) && mv $(@D).tmp $(@D)

## labelstudio: start Label Studio on 127.0.0.1 (LABEL_STUDIO_PORT, default 8080) with the admin and API token of tagqa's settings
labelstudio: labelstudio-install setup
	LABEL_STUDIO_VENV=$(LABEL_STUDIO_VENV) TAGQA=$(BIN)/tagqa deploy/labelstudio/start.sh

clean-state:
	rm -rf $(STATE)
