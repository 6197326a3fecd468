#!/usr/bin/env bash
# Decoding speed on SmolLM2-135M-Instruct, batch 1, one thread, in one run: calm on the
# quantized GGUF (Q4_1 as stored, re-quantized to Q8_0, de-quantized to f32) with forced exits
# at several layers against the ideal L/j, transformers (f32) and llama.cpp (its Python
# binding, when installed) on the same file.
# Results: reports/smollm2-bench/. Needs scripts/fetch_smollm2.sh and a release or debug build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
CALM=${CALM:-target/release/calm}
OUT=reports/smollm2-bench
mkdir -p "$OUT"
COMMON=(--examples 4 --input-tokens 24 --max-new-tokens 32 --batch 1 --threads 1 --repeat 2
        --exit-layers 5,10,15,20,25)
for dtype in quantized q8-0 f32; do
  "$CALM" bench decode --model "$MODEL" --dtype "$dtype" "${COMMON[@]}" --out "$OUT/calm-$dtype.json" > /dev/null
  echo "calm $dtype done"
done
python3 scripts/bench_hf_llama_decode.py --model "$MODEL" --threads 1 --examples 4 \
  --input-tokens 24 --max-new-tokens 32 > "$OUT/transformers-f32.json"
echo "transformers done"
if python3 -c "import llama_cpp" 2>/dev/null; then
  python3 scripts/bench_llama_cpp_decode.py --model "$MODEL" --threads 1 --examples 4 \
    --input-tokens 24 --max-new-tokens 32 > "$OUT/llama-cpp.json"
  echo "llama.cpp done"
else
  echo "llama.cpp skipped: pip install llama-cpp-python (builds llama.cpp from source)"
fi
