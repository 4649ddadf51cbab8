# OpenMind developer commands, in the style of the Hugging Face repos.
.PHONY: setup test test-fast style quality demo bench clean

VENV ?= .venv
PY := $(VENV)/bin/python
check_dirs := src tests recipes benchmarks scripts

setup:
	bash scripts/setup_environment.sh

# Installs what it needs first, so it works from a fresh clone on a fresh machine.
# pytest's exit code 5 (nothing collected) counts as a failure.
test: setup
	@$(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

style: setup
	$(PY) -m ruff check --fix $(check_dirs)
	$(PY) -m ruff format $(check_dirs)

quality: setup
	$(PY) -m ruff check $(check_dirs)
	$(PY) -m ruff format --check $(check_dirs)

demo: setup
	$(PY) scripts/demo.py --output outputs/demo

bench: setup
	$(PY) benchmarks/run_all.py --output benchmarks/results/latest.json

clean:
	rm -rf outputs build dist .pytest_cache .ruff_cache src/*.egg-info
