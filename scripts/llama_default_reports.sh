#!/usr/bin/env bash
# The decoder-only default's committed reports and the T5 vs decoder-only comparison, in one
# command (after scripts/train_llama_model.sh):
#   1. the main job on the decoder-only default: `calm calibrate --model datasets/bible/model-llama`
#      (the main job's defaults: the first 1,000 modernize calibration examples, a seeded 10% for
#      the auto λ grid, δ 0.1, ε 0.05, the frontier, the benchmark on the test split)
#      -> reports/bible-llama-modernize-textual/, timed with /usr/bin/time;
#   2. the CI gate on the first 500 test examples -> check.json and check-summary.md beside it;
#   3. the validity trials on its records (50 random 80/20 splits) -> reports/bible-llama-modernize-trials/;
#   4. for both defaults: the model-card numbers on the first 500 modernize test examples
#      (`calm evaluate --json`) and the batch-1 time split of the full model, forced exits and the
#      certified configuration on the first 60 (`calm bench decode --data --thresholds`), then
#      scripts/compare_t5_llama.py -> reports/t5-vs-llama/.
#
#   scripts/llama_default_reports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
cargo build --locked --quiet
CALM="$CARGO_TARGET_DIR/debug/calm"
MODEL=datasets/bible/model-llama
MAIN=reports/bible-llama-modernize-textual
CMP=reports/t5-vs-llama
mkdir -p "$CMP"
/usr/bin/time -f "wall %e s, peak RSS %M KB" -o reports/llama-main-job-time.txt \
  "$CALM" calibrate --model "$MODEL"
cat reports/llama-main-job-time.txt
"$CALM" check --thresholds "$MAIN/thresholds.json" --data datasets/bible/test.jsonl.gz \
  --max-examples 500 --summary "$MAIN/check-summary.md" \
  || echo "calm check exit status $?"
rm -rf reports/bible-llama-modernize-trials/sweep
"$CALM" trials --records "$MAIN/records.parquet" --cost-model "$MAIN/thresholds.json" \
  --delta 0.1 --epsilon 0.05 --runs 50 --out reports/bible-llama-modernize-trials
for pair in t5:datasets/bible/model:reports/bible-modernize-textual llama:$MODEL:$MAIN; do
  IFS=: read -r key dir run <<< "$pair"
  "$CALM" evaluate --model "$dir" --data datasets/bible/test.jsonl.gz --task modernize \
    --max-examples 500 --jobs 2 --json > "$CMP/evaluate-$key.json"
  "$CALM" bench decode --model "$dir" --data datasets/bible/test.jsonl.gz --task modernize \
    --examples 60 --batch 1 --exit-layers 1,2,4,6 --max-new-tokens 64 --repeat 2 \
    --thresholds "$run/thresholds.json" --out "$CMP/bench-$key.json"
done
python3 scripts/compare_t5_llama.py --out "$CMP"
