# The workspace's commands. `make demo` and `make test` set up what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup test demo build clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## install apt packages, .venv with pinned deps, colcon build (idempotent)
	@bash scripts/setup.sh

test: setup  ## run the whole test suite (pytest args: make test ARGS="-k dds")
	@bash scripts/run_tests.sh $(ARGS)

demo: setup  ## run the main job on the embedded default
	@bash scripts/demo.sh $(ARGS)

build: setup  ## alias of setup: rebuilds only what changed

clean:  ## remove colcon build products (keeps .venv)
	rm -rf build install log

distclean: clean  ## remove everything make setup created
	rm -rf .venv
