# Each golden-path step is a target of the same name that calls the CLI; the CLI holds all logic.
# Variables (also read from the environment or .env): METAMCP_REF METAMCP_REPO_URL TARGET APP_NAME
# DATABRICKS_CONFIG_PROFILE. Example: make prepare METAMCP_REF=v2.4.22
SHELL := /bin/bash
CLI := node bin/metamcp-databricks.js
ARGS ?=

export METAMCP_REF METAMCP_REPO_URL TARGET APP_NAME DATABRICKS_CONFIG_PROFILE

.PHONY: all install cli test lint typecheck bench config prepare build render bundle-deploy app-deploy \
	app-health app-logs app-status local doctor destroy start connect databricks-tools

all: local

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: node_modules/.package-lock.json

dist/cli.js: node_modules/.package-lock.json tsup.config.ts $(shell find src -name '*.ts' 2>/dev/null)
	npm run build --silent

cli: dist/cli.js

test: install
	npm test

lint: install
	npm run lint

typecheck: install
	npm run typecheck

bench: install
	npm run bench

config prepare build render bundle-deploy app-deploy app-health app-logs app-status doctor destroy start: dist/cli.js
	$(CLI) $@ $(ARGS)

local: dist/cli.js
	$(CLI) local up $(ARGS)

# MCP clients: `make connect ENDPOINT=<name> [TARGET=dev|prod] ARGS="--write"` (or ARGS="--local --write").
ENDPOINT ?=
connect: dist/cli.js
	@test -n "$(ENDPOINT)" || { echo 'usage: make connect ENDPOINT=<MetaMCP endpoint name> [TARGET=dev] [ARGS="--write"|"--local"|"--save-key"]' >&2; exit 2; }
	$(CLI) connect $(ENDPOINT) $(ARGS)

# Databricks' managed MCP servers in MetaMCP: `make databricks-tools ARGS="add functions main.tools --local"`
# (or ARGS="list", ARGS="grants genie <space-id>"; TARGET=dev|prod for a deployed app).
databricks-tools: dist/cli.js
	@test -n "$(ARGS)" || { echo 'usage: make databricks-tools ARGS="add <kind> [ids] [--local] | list | grants <kind> [ids]" [TARGET=dev]' >&2; exit 2; }
	$(CLI) databricks-tools $(ARGS)
