#!/usr/bin/env bash
# Full T5 decoding, calm against transformers, in one run: the random T5 of `calm bench decode`
# (d_model 256, 4 heads, d_ff 1024, gated-gelu, 4 encoder / 8 decoder layers, vocab 8000),
# 64 random inputs of 24 tokens, 32 new tokens, one thread, batch 1 / 16 / 64.
# Usage: scripts/bench_vs_transformers.sh [CALM_BINARY] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
CALM="${1:-target/debug/calm}"
OUT="${2:-reports/batch-vs-transformers}"
mkdir -p "$OUT"
"$CALM" bench decode --batch 1,16,64 --examples 64 --input-tokens 24 --max-new-tokens 32 \
  --exit-layers 4 --threads 1 --json --out "$OUT/calm.json" > /dev/null
python3 scripts/bench_hf_decode.py --threads 1 --examples 64 --input-tokens 24 \
  --max-new-tokens 32 --batch 1,16,64 --json "$OUT/transformers.json" > /dev/null
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
calm = {r["batch"]: r for r in json.loads((out / "calm.json").read_text())["runs"] if r["policy"] == "full"}
hf = {r["batch"]: r for r in json.loads((out / "transformers.json").read_text())["runs"]}
print("| batch | calm tokens/s | decoder ms/token | transformers tokens/s | decoder ms/token | calm / transformers |")
print("|---|---|---|---|---|---|")
for b in sorted(calm):
    c, h = calm[b], hf[b]
    print(f"| {b} | {c['tokens_per_second']:.0f} | {c['decoder_ms_per_token']:.2f} | {h['tokens_per_second']:.0f} |"
          f" {h['decoder_ms_per_token']:.2f} | ×{c['tokens_per_second'] / h['tokens_per_second']:.2f} |")
PY
