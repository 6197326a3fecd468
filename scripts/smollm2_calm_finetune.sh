#!/usr/bin/env bash
# A CALM fine-tune of SmolLM2-135M-Instruct within this machine's reach, and what it does to
# the per-layer agreement and the certified layers: the GGUF is written out in HF layout (f32),
# fine-tuned with the CALM loss over the top layers on `modernize` pairs in the chat format,
# then the base and the fine-tuned model are each calibrated on the same held-out examples.
# Resumable: rerun to continue the fine-tune. Results: reports/smollm2-calm-finetune/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CALM=${CALM:-target/release/calm}
MINUTES=${MINUTES:-38}
CHAT=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n'
mkdir -p runs reports/smollm2-calm-finetune
# The first 4,000 modernize training pairs.
python3 - <<'PY'
import gzip, json
n = 0
with gzip.open("datasets/bible/train.jsonl.gz", "rt") as f, open("runs/smollm2-train-modernize.jsonl", "w") as out:
    for line in f:
        if json.loads(line)["task"] == "modernize":
            out.write(line)
            n += 1
            if n == 4000:
                break
PY
RAYON_NUM_THREADS=1 "$CALM" train --init-from models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
  --data runs/smollm2-train-modernize.jsonl --out runs/smollm2-calm --prompt-template "$CHAT" \
  --exit-layers 20,22,24,26,28,30 --steps 45 --warmup 4 --learning-rate 2e-4 --batch-tokens 1024 \
  --max-tokens-per-sequence 128 --checkpoint-every 5 --stop-after-minutes "$MINUTES" --threads 1
cp runs/smollm2-calm/train_log.csv reports/smollm2-calm-finetune/train_log.csv
# Base (the GGUF in f32) and fine-tuned model on the same 30 held-out examples, side by side.
for model in base calm; do
  dir=runs/smollm2-calm; [ "$model" = base ] && dir=runs/smollm2-calm/base
  "$CALM" calibrate --model "$dir" --prompt-template "$CHAT" --data datasets/bible/test.jsonl.gz \
    --task modernize --max-examples 30 --max-new-tokens 16 --measures state --taus 0 \
    --lambdas 1,0.99,0.97,0.9 --grid-share 0 --jobs 1 \
    --out "reports/smollm2-calm-finetune/$model" &
done
wait
