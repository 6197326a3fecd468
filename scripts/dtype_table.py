"""The table of reports/dtypes/README.md from its bench and evaluate JSON files."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print("# Compute dtypes on the CPU\n")
print("Made by `scripts/bench_dtypes.sh` (full model, one thread, 32 modernize test examples for")
print("speed; the first 100 for BLEU). Speed ratios are against f32 of the same model in the")
print("same run of the script.\n")
print("| model | dtype | batch 1 tokens/s | × f32 | batch 16 tokens/s | × f32 | BLEU (100) | tokens |")
print("|---|---|---|---|---|---|---|---|")
for model in ["model", "model-llama"]:
    base = {}
    for dtype in ["f32", "f16", "bf16"]:
        bench = json.loads((out / f"bench-{model}-{dtype}.json").read_text())
        full = {r["batch"]: r["tokens_per_second"] for r in bench["runs"] if r["policy"] == "full"}
        if dtype == "f32":
            base = full
        quality = json.loads((out / f"evaluate-{model}-{dtype}.json").read_text())["full"]
        print(
            f"| {model} | {dtype} | {full[1]:.0f} | ×{full[1] / base[1]:.2f} | {full[16]:.0f} |"
            f" ×{full[16] / base[16]:.2f} | {quality['bleu']:.2f} | {quality['tokens']} |"
        )
