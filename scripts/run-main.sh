#!/usr/bin/env bash
# Set up .venv if needed (scripts/setup.sh), then run mner's main job on the sample corpus
# that ships inside the package: corpus statistics, validation, and scoring predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
sample=$(.venv/bin/mner data sample)
images="$(dirname "$sample")/images"
echo "== mner data stats (sample corpus: $sample)"
.venv/bin/mner data stats "$sample" --images "$images"
echo
echo "== mner data validate (the sample reproduces two quirks of the real data and one missing image)"
.venv/bin/mner data validate "$sample" --images "$images" --missing-images blank
echo
echo "== mner score (predictions of a text-only tagger on the sample test split)"
.venv/bin/mner score "$sample/test.txt" "$(dirname "$sample")/predictions/test.txt"
