#!/usr/bin/env bash
# Train (or resume) the default CALM model on the Bible data, then its exit classifier.
# Rerunning the same command resumes from the last checkpoint, bit-identically.
#
#   scripts/train_default_model.sh [RUN_DIR] [THREADS]
#
# Defaults: RUN_DIR=$HOME/.cache/calm/runs (outside the clone, so a long run survives re-clones),
# THREADS=2 (use 1 to leave a core for building; a step then takes about 1.4x longer).
# Size: d_model 128, d_ff 512 (gated-gelu), 4 heads, 4 encoder / 8 decoder layers, BPE vocab
# 4000, embeddings tied with the LM head: about 4.2M parameters, a 17 MB checkpoint.
#
# Two runs, both tasks mixed by prefix:
#   1. STAGE1_STEPS (2600) steps from scratch at peak lr 3e-3, identity pairs for half of the
#      examples (--copy-share 0.5): the first 1000 steps are a synthetic copy curriculum
#      (--copy-curriculum-steps: random token sequences, source = target), so that the copy
#      circuit forms before the language model takes over; the rest is the data.
#   2. STAGE2_STEPS (2400) steps on the data from stage 1's weights (--init-from: fresh optimizer,
#      a new warm-up and cosine decay from peak lr 1.5e-3, seed 1), identity pairs for half of the
#      modernize examples only (--copy-tasks modernize), so that translation spends its share of
#      the steps on real pairs (MODEL.md compares the three choices).
# About 66 + 80 minutes on 2 threads, then 3 minutes for the classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-$HOME/.cache/calm/runs}"
THREADS="${2:-2}"
STAGE1_STEPS="${STAGE1_STEPS:-2600}"
STAGE2_STEPS="${STAGE2_STEPS:-2400}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
# The dev profile compiles dependencies at opt-level 3 (Cargo.toml) and shares the test build.
cargo build --locked
CALM="$CARGO_TARGET_DIR/debug/calm"
SHAPE=(--d-model 128 --d-ff 512 --heads 4 --encoder-layers 4 --decoder-layers 8 --vocab-size 4000
  --tie-embeddings --batch-tokens 4096 --checkpoint-every 100 --copy-share 0.5 --threads "$THREADS")
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUNS/bible-d128-stage1" "${SHAPE[@]}" \
  --steps "$STAGE1_STEPS" --copy-curriculum-steps 1000 --warmup 100 --learning-rate 3e-3 --seed 0
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUNS/bible-d128-stage2" "${SHAPE[@]}" \
  --copy-tasks modernize --init-from "$RUNS/bible-d128-stage1" \
  --steps "$STAGE2_STEPS" --warmup 100 --learning-rate 1.5e-3 --seed 1
"$CALM" train-classifier --model "$RUNS/bible-d128-stage2" --data datasets/bible/train.jsonl.gz \
  --eval datasets/bible/test.jsonl.gz --steps 300 --threads "$THREADS"
