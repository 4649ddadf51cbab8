# OpenMind developer commands, in the style of the Hugging Face repos.
.PHONY: setup test test-vllm test-deps style quality demo bench clean

VENV ?= .venv
PY := $(VENV)/bin/python
check_dirs := src tests recipes benchmarks scripts

setup:
	bash scripts/setup_environment.sh

# Installs what it needs first, so it works from a fresh clone on a fresh machine.
# pytest's exit code 5 (nothing collected) counts as a failure.
# System tools some tests use (git-lfs for the Hub-pull test); those tests skip with a reason when absent.
test-deps:
	@command -v git-lfs >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq git-lfs >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq git-lfs >/dev/null 2>&1)) ; } || \
		echo "note: git-lfs not installed; the Hub-pull test will skip"
	@# Debian's bubblewrap: the OS boundary around model-written code (evaluation/sandbox.py); without it code tests fail.
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq bubblewrap >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1)) ; } || \
		echo "note: bubblewrap not installed; code-execution tests will fail (apt-get install bubblewrap)"
	@# Debian's chromium + chromium-driver for the chat's browser test (Selenium Manager cannot download browsers here).
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1)) ; } || \
		echo "note: chromium/chromedriver not installed; the chat browser test will skip"

test: setup test-deps
	@$(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# vLLM (CPU build) in its own venv, built once (~10 min) and cached: parity with transformers + `vllm serve` over HTTP.
test-vllm:
	bash scripts/setup_vllm_environment.sh
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} .venv-vllm/bin/python -m pytest -q -s -p no:cacheprovider --timeout=1500 \
		tests/test_vllm.py; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-vllm: no tests were collected" >&2; exit 1; fi; exit $$rc

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
