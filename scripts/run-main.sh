#!/usr/bin/env bash
# Set up .venv if needed (scripts/setup.sh), then run mner's main job: `mner quickstart`
# builds a demo corpus from photographs shipped with installed packages, trains the text-only
# CRF tagger and MAF on it with the offline encoders (a few minutes on 2 CPU cores), shows that
# the image matters, saves the model and tags one sentence with two different images.
# Extra arguments go to `mner quickstart` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/mner quickstart "$@"
