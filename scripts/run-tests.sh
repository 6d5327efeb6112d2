#!/usr/bin/env bash
# Set up .venv if needed (scripts/setup.sh), then run the whole test suite, slow tests
# (real offline weights, real benchmark files) included. Extra arguments go to pytest,
# e.g. scripts/run-tests.sh -m "not slow" for the fast tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
