#!/usr/bin/env bash
# The default model's committed reports, in one command (after scripts/train_default_model.sh
# and copying its checkpoint to datasets/bible/model):
#   1. the README's main job: `calm calibrate` with no arguments (embedded model, calibration
#      split, modernize, δ 0.1, ε 0.05, benchmark on the test split) -> reports/bible-modernize-textual/,
#      timed with /usr/bin/time;
#   2. the CI gate on the test split: `calm check` of that config -> check.json beside it;
#   3. the validity trials: a full-grid sweep (Bonferroni tests every λ, so no chain stops early)
#      of the calibration split, then 50 random 80/20 calibration/test splits -> reports/bible-modernize-trials/.
#
#   scripts/default_model_reports.sh [TRIALS_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS_EXAMPLES="${1:-500}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
cargo build --locked --quiet
CALM="$CARGO_TARGET_DIR/debug/calm"
/usr/bin/time -f "wall %e s, peak RSS %M KB" -o reports/main-job-time.txt "$CALM" calibrate
cat reports/main-job-time.txt
"$CALM" check --thresholds reports/bible-modernize-textual/thresholds.json \
  --data datasets/bible/test.jsonl.gz --max-examples 500 || echo "calm check exit status $?"
TRIALS=reports/bible-modernize-trials
"$CALM" calibrate --model datasets/bible/model --data datasets/bible/calibration.jsonl.gz \
  --task modernize --procedure bonferroni --measures softmax-diff,state,classifier --taus 0 \
  --lambdas 1,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1 --max-examples "$TRIALS_EXAMPLES" \
  --delta 0.1 --epsilon 0.05 --out "$TRIALS/sweep"
"$CALM" trials --records "$TRIALS/sweep/records.parquet" --delta 0.1 --epsilon 0.05 --runs 50 \
  --out "$TRIALS"
