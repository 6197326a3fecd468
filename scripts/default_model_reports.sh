#!/usr/bin/env bash
# The default model's committed reports, in one command (after scripts/train_default_model.sh
# and copying its checkpoint to datasets/bible/model):
#   1. the README's main job: `calm calibrate` with no arguments (embedded model, the first 1,000
#      modernize examples of the calibration split, of which a seeded 10% place the auto λ grid and
#      900 are tested; the whole grid swept; δ 0.1, ε 0.05; the frontier and the benchmark on the
#      test split) -> reports/bible-modernize-textual/, timed with /usr/bin/time;
#   2. the CI gate on the first 500 test examples: `calm check` of that config -> check.json and
#      check-summary.md beside it;
#   3. the validity trials on the main job's own records (the whole grid, so no chain was cut):
#      50 random 80/20 calibration/test splits -> reports/bible-modernize-trials/;
#   4. the fixed grid (1.00, 0.95, …, 0.05) on the same 900 tested examples, for the report's
#      "auto vs fixed grid" line -> reports/bible-modernize-fixed-grid/ (early stop: only δ = 0.1
#      is compared, and an early-stopped sweep certifies what the whole grid does at that δ).
#
#   scripts/default_model_reports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
cargo build --locked --quiet
CALM="$CARGO_TARGET_DIR/debug/calm"
MAIN=reports/bible-modernize-textual
/usr/bin/time -f "wall %e s, peak RSS %M KB" -o reports/main-job-time.txt "$CALM" calibrate
cat reports/main-job-time.txt
"$CALM" check --thresholds "$MAIN/thresholds.json" --data datasets/bible/test.jsonl.gz \
  --max-examples 500 --summary "$MAIN/check-summary.md" || echo "calm check exit status $?"
rm -rf reports/bible-modernize-trials/sweep
"$CALM" trials --records "$MAIN/records.parquet" --cost-model "$MAIN/thresholds.json" \
  --delta 0.1 --epsilon 0.05 --runs 50 --out reports/bible-modernize-trials
"$CALM" calibrate --model datasets/bible/model --data datasets/bible/calibration.jsonl.gz \
  --task modernize --max-examples 1000 --grid-share 0.1 \
  --lambdas 1,0.95,0.9,0.85,0.8,0.75,0.7,0.65,0.6,0.55,0.5,0.45,0.4,0.35,0.3,0.25,0.2,0.15,0.1,0.05 \
  --early-stop --delta 0.1 --epsilon 0.05 --out reports/bible-modernize-fixed-grid
