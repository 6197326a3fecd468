#!/usr/bin/env bash
# Train (or resume) the default CALM model on the Bible data, then its exit classifier.
# Rerunning the same command resumes each stage from its last checkpoint, bit-identically.
#
#   scripts/train_default_model.sh [RUN_DIR] [THREADS]
#
# Defaults: RUN_DIR=$HOME/.cache/calm/runs (outside the clone, so a long run survives re-clones),
# THREADS=1 (leave the other core for building; 2 threads are about 1.4x faster).
# Size: d_model 128, d_ff 512 (gated-gelu), 4 heads, 4 encoder / 8 decoder layers, BPE vocab
# 4000: about 4.7M parameters, an 18.8 MB checkpoint.
#
# Two stages (how datasets/bible/model was made; MODEL.md has the wall times):
#   1. both tasks from scratch, the first STAGE1_STEPS steps of a 4500-step schedule;
#   2. from stage 1 (--init-from), a fresh 2000-step schedule with identity pairs for half of the
#      examples (--copy-share 0.5), which pushes the model to copy its input, stopped at
#      STAGE2_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-$HOME/.cache/calm/runs}"
THREADS="${2:-1}"
STAGE1_STEPS="${STAGE1_STEPS:-2300}"
STAGE2_STEPS="${STAGE2_STEPS:-2000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
# The dev profile compiles dependencies at opt-level 3 (Cargo.toml) and shares the test build.
cargo build --locked
CALM="$CARGO_TARGET_DIR/debug/calm"
SHAPE=(--d-model 128 --d-ff 512 --heads 4 --encoder-layers 4 --decoder-layers 8 --vocab-size 4000
  --batch-tokens 4096 --checkpoint-every 100)
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUNS/bible-d128" "${SHAPE[@]}" \
  --steps 4500 --warmup 300 --learning-rate 1.5e-3 --seed 0 --threads "$THREADS" \
  --stop-after-steps "$STAGE1_STEPS"
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUNS/bible-d128-copy" "${SHAPE[@]}" \
  --init-from "$RUNS/bible-d128" --steps 2000 --warmup 100 --learning-rate 1e-3 --seed 1 \
  --copy-share 0.5 --threads "$THREADS" --stop-after-steps "$STAGE2_STEPS"
"$CALM" train-classifier --model "$RUNS/bible-d128-copy" --data datasets/bible/train.jsonl.gz \
  --eval datasets/bible/test.jsonl.gz --steps 300 --threads "$THREADS"
