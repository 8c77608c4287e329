# Developer entry points (GNU make). `make help` lists them.
# Everything runs from one virtualenv, .venv. Each target installs only the extras it needs
# (the demo: the runtime, no TensorFlow), and a stamp per extras set remembers what is in
# .venv, so `make demo` and then `make test` installs just what the tests add.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
# What each target installs (pyproject.toml extras). `training` pulls TensorFlow for this
# machine's architecture (tensorflow-cpu on x86-64 Linux, tensorflow elsewhere).
DEMO_EXTRAS ?= runtime
TEST_EXTRAS ?= runtime,training,dev
EXTRAS ?= $(TEST_EXTRAS)
PYTEST_ARGS ?=
# Real labelled recordings (not in the repository): models trains on them, eval scores on them.
DATASETS ?= ../shared/datasets
BIN := $(VENV)/bin
comma := ,
# Touched after a successful install of one extras set; older than pyproject.toml means
# "install again". .installed-runtime+training+dev for runtime,training,dev.
stamp = $(VENV)/.installed-$(subst $(comma),+,$(1))

# What the tests drive besides Python: command -> Debian package.
TEST_TOOLS := tmux:tmux openssl:openssl cc:gcc

.PHONY: help venv mosquitto test-tools test lint demo bench models eval clean distclean

help: ## List the targets
	@echo "Usage: make <target>"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

venv: $(call stamp,$(EXTRAS)) ## Create .venv and pip install -e ".[EXTRAS]" (default: runtime,training,dev)

$(VENV)/.installed-%: pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
		echo "creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV) || { \
			rm -rf $(VENV); \
			echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; \
			exit 1; }; \
	fi
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[$(subst +,$(comma),$*)]"
	@touch $@

mosquitto: ## Make sure a mosquitto broker binary exists (apt-get install as root or via sudo -n)
	@if command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] \
		|| [ -x /usr/local/sbin/mosquitto ]; then \
		exit 0; \
	elif ! command -v apt-get >/dev/null; then \
		echo "error: mosquitto is missing; install it with your package manager" \
			"(macOS: brew install mosquitto)" >&2; \
		exit 1; \
	elif [ "$$(id -u)" -eq 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto; \
	elif sudo -n true 2>/dev/null; then \
		sudo -n apt-get update \
			&& sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto; \
	else \
		echo "error: mosquitto is missing and installing it needs root; run:" >&2; \
		echo "    sudo apt-get install mosquitto" >&2; \
		exit 1; \
	fi

test-tools: ## Make sure tmux (watch), openssl (TLS certificates) and a C compiler (wire/c) exist
	@missing=""; for pair in $(TEST_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then \
		exit 0; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
		sudo -n apt-get update \
			&& sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
		echo "error: the tests need:$$missing; install them (Debian: sudo apt-get install$$missing)" >&2; \
		exit 1; \
	fi

test: $(call stamp,$(TEST_EXTRAS)) mosquitto test-tools ## Run the test suite (real mosquitto, real ptys); PYTEST_ARGS=... to pass more
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(call stamp,$(TEST_EXTRAS)) ## ruff check the tree
	$(BIN)/ruff check .

demo: $(call stamp,$(DEMO_EXTRAS)) mosquitto ## Three simulated wearables (HR, BP, glucose) -> edge runtime -> private broker, live (installs the runtime only)
	$(BIN)/python -m deploy.demo

bench: $(call stamp,$(DEMO_EXTRAS)) mosquitto ## Run the benchmarks
	$(BIN)/python -m bench

models: $(call stamp,$(TEST_EXTRAS)) ## Train, quantise and evaluate every model into models/ (needs TensorFlow, DATASETS=...)
	@[ -d $(DATASETS) ] || echo "warning: $(DATASETS) missing: the shipped hr and glucose bundles were also trained on its ieee_spc2015/ and cgm/; set DATASETS=..." >&2
	$(BIN)/wearable-train all --out models $(if $(wildcard $(DATASETS)),--real-data $(DATASETS),)

eval: $(call stamp,$(TEST_EXTRAS)) ## Score the models on real labelled recordings in DATASETS (default ../shared/datasets) into models/*_real_data.md (hr: 12-fold leave-subject-out, ~40 min on 2 shared cores)
	$(BIN)/wearable-train evaluate hr --real-data $(DATASETS) --loso --out models
	$(BIN)/wearable-train evaluate glucose --real-data $(DATASETS)
	$(BIN)/wearable-train evaluate bp --real-data $(DATASETS) --out models

clean: ## Remove caches and build output (keeps .venv and models/)
	rm -rf build dist .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
