#!/usr/bin/env bash
# Train (or resume) the default CALM model on the Bible data, then its exit classifier.
# Rerunning the same command resumes from the last checkpoint in RUN_DIR, bit-identically.
#
#   scripts/train_default_model.sh [RUN_DIR] [THREADS]
#
# Defaults: RUN_DIR=$HOME/.cache/calm/runs/bible-d128 (outside the clone, so a long run survives
# re-clones), THREADS=1 (leave the other core for building; 2 threads ≈ 1.3× faster).
# Size: d_model 128, d_ff 512 (gated-gelu), 4 heads, 4 encoder / 8 decoder layers, BPE vocab
# 4000 → about 4.7M parameters, an 18.8 MB checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${1:-$HOME/.cache/calm/runs/bible-d128}"
THREADS="${2:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
# The dev profile compiles dependencies at opt-level 3 (Cargo.toml) and shares the test build.
cargo build --locked
CALM="$CARGO_TARGET_DIR/debug/calm"
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUN_DIR" \
  --d-model 128 --d-ff 512 --heads 4 --encoder-layers 4 --decoder-layers 8 --vocab-size 4000 \
  --steps 4500 --warmup 300 --learning-rate 1.5e-3 --batch-tokens 4096 --checkpoint-every 100 \
  --seed 0 --threads "$THREADS"
"$CALM" train-classifier --model "$RUN_DIR" --data datasets/bible/train.jsonl.gz \
  --eval datasets/bible/calibration.jsonl.gz --steps 300 --threads "$THREADS"
