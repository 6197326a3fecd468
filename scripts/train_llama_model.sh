#!/usr/bin/env bash
# Train (or resume) the decoder-only default model (datasets/bible/model-llama/) from scratch
# with the CALM loss, then its exit classifier, and copy the result into the repository.
# Rerunning the same command resumes from the last checkpoint, bit-identically.
#
#   scripts/train_llama_model.sh [RUN_DIR] [THREADS]
#
# Defaults: RUN_DIR=$HOME/.cache/calm/runs (outside the clone), THREADS=1 (leaves a core for
# building; 2 threads make a step about 1.4x faster).
# Shape (MODEL.md says why): LlamaForCausalLM, hidden 128, SwiGLU 512, 4 heads (4 KV heads),
# 8 layers, BPE vocab 4000 with <pad> </s> <unk> <sep>, embeddings tied with the LM head:
# about 2.6M parameters, a 10 MB checkpoint.
# One run on the modernize examples of datasets/bible/train.jsonl.gz as prompt -> completion
# ("modernize: <verse>" <sep> then the modern verse and </s>; the loss on the completion only),
# identity pairs for half of them (--copy-share 0.5), 2,048 padded tokens a step, AdamW, peak
# lr 3e-3 after 200 warm-up steps, cosine decay to a tenth.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-$HOME/.cache/calm/runs}"
THREADS="${2:-1}"
STEPS="${STEPS:-4000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
cargo build --locked
CALM="$CARGO_TARGET_DIR/debug/calm"
RUN="$RUNS/bible-llama-d128"
"$CALM" train --architecture llama --task modernize --data datasets/bible/train.jsonl.gz \
  --out "$RUN" --vocab-size 4000 --d-model 128 --d-ff 512 --heads 4 --kv-heads 4 \
  --decoder-layers 8 --tie-embeddings --max-positions 512 --max-tokens-per-sequence 160 \
  --batch-tokens 2048 --steps "$STEPS" --warmup 200 --learning-rate 3e-3 --copy-share 0.5 \
  --copy-tasks modernize --seed 0 --checkpoint-every 100 --threads "$THREADS"
"$CALM" train-classifier --model "$RUN" --data datasets/bible/train.jsonl.gz \
  --eval datasets/bible/test.jsonl.gz --steps 300 --threads "$THREADS" | tee "$RUN/classifier_f1.txt"
OUT=datasets/bible/model-llama
mkdir -p "$OUT/training"
cp "$RUN"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,model.safetensors} "$OUT/"
cp "$RUN"/{train_log.csv,trainer_state.json} "$OUT/training/"
cp "$RUN/classifier_f1.txt" "$OUT/training/"
echo "model in $OUT"
