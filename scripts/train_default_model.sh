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
# One run of STEPS (default 2600) steps, both tasks mixed by prefix:
#   - the first 1000 steps are a synthetic copy curriculum (--copy-curriculum-steps: random token
#     sequences, source = target), so that the copy circuit forms before the language model
#     takes over;
#   - the rest is the data, with identity pairs for half of the examples (--copy-share 0.5).
# STOP_AFTER (default: STEPS) stops early with a checkpoint; the schedule stays that of STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-$HOME/.cache/calm/runs}"
THREADS="${2:-2}"
STEPS="${STEPS:-2600}"
STOP_AFTER="${STOP_AFTER:-$STEPS}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
# The dev profile compiles dependencies at opt-level 3 (Cargo.toml) and shares the test build.
cargo build --locked
CALM="$CARGO_TARGET_DIR/debug/calm"
"$CALM" train --data datasets/bible/train.jsonl.gz --out "$RUNS/bible-d128" \
  --d-model 128 --d-ff 512 --heads 4 --encoder-layers 4 --decoder-layers 8 --vocab-size 4000 \
  --tie-embeddings --batch-tokens 4096 --checkpoint-every 100 \
  --steps "$STEPS" --copy-curriculum-steps 1000 --warmup 100 --learning-rate 3e-3 --seed 0 \
  --copy-share 0.5 --threads "$THREADS" --stop-after-steps "$STOP_AFTER"
"$CALM" train-classifier --model "$RUNS/bible-d128" --data datasets/bible/train.jsonl.gz \
  --eval datasets/bible/test.jsonl.gz --steps 300 --threads "$THREADS"
