#!/usr/bin/env bash
# Full-model decoding in f32, f16 and bf16 on both embedded models (batch 1 and 16, one
# thread, 32 modernize test examples), and their quality on 100 test examples:
# reports/dtypes/. Usage: scripts/bench_dtypes.sh [CALM_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
CALM="${1:-target/release/calm}"
OUT=reports/dtypes
mkdir -p "$OUT"
for model in model model-llama; do
  for dtype in f32 f16 bf16; do
    "$CALM" bench decode --model "datasets/bible/$model" --dtype "$dtype" \
      --data datasets/bible/test.jsonl.gz --task modernize --examples 32 --batch 1,16 \
      --exit-layers 4 --threads 1 --json --out "$OUT/bench-$model-$dtype.json" > /dev/null
    "$CALM" evaluate --model "datasets/bible/$model" --dtype "$dtype" \
      --data datasets/bible/test.jsonl.gz --task modernize --max-examples 100 --jobs 1 \
      --json > "$OUT/evaluate-$model-$dtype.json"
  done
done
python3 scripts/dtype_table.py "$OUT" > "$OUT/README.md"
