#!/usr/bin/env bash
# Measure the numbers of the model card (MODEL.md) for a checkpoint on the test split:
# per task, BLEU and ROUGE-L of the full model, of every exit layer and of the oracle, the oracle's
# mean layers, the share of tokens where each layer agrees with the top layer, and the copy
# baseline. The exit classifier's per-layer F1 comes from `calm train-classifier --eval`
# (scripts/train_default_model.sh prints it).
#
#   scripts/model_card.sh MODEL_DIR [JOBS] [MAX_EXAMPLES] > model-card-numbers.md
#
# TASKS (default: "modernize translate-en-fr") names the tasks, e.g. TASKS=modernize for the
# decoder-only default, which was trained on modernize only.
#
# MAX_EXAMPLES (default: all, about 2,050 a task) caps the examples per task: each costs ten
# decodings (full model, eight forced exits, oracle).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:?usage: scripts/model_card.sh MODEL_DIR [JOBS] [MAX_EXAMPLES]}"
JOBS="${2:-2}"
MAX=()
if [ -n "${3:-}" ]; then MAX=(--max-examples "$3"); fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/calm/target}"
cargo build --locked --quiet
CALM="$CARGO_TARGET_DIR/debug/calm"
echo "# Measured on $(date -u +%Y-%m-%d) with \`scripts/model_card.sh $*\`"
echo
echo "model.safetensors sha256: $(sha256sum "$MODEL/model.safetensors" | cut -d' ' -f1)"
for task in ${TASKS:-modernize translate-en-fr}; do
  echo
  echo "## $task (datasets/bible/test.jsonl.gz)"
  echo
  "$CALM" evaluate --model "$MODEL" --data datasets/bible/test.jsonl.gz --task "$task" --jobs "$JOBS" "${MAX[@]}" 2>/dev/null
done
