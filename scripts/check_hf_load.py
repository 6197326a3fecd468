"""Check that a checkpoint written by `calm train` loads in Hugging Face transformers and decodes
exactly as calm does: same greedy token ids and exit-head logits within 1e-4.

    python3 scripts/check_hf_load.py CHECKPOINT_DIR [--calm PATH_TO_CALM_BINARY] [--inputs TEXT ...]

Needs `pip install torch transformers`. Not part of CI (CI has no Python requirement); the Rust
tests cover the same format against fixtures that transformers produced.
"""
import argparse
import json
import subprocess
import sys

import torch
from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--calm", default="target/debug/calm")
    parser.add_argument("--inputs", nargs="*", default=[
        "modernize: And God said, Let there be light: and there was light.",
        "translate English to French: In the beginning, God created the heavens and the earth.",
    ])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = T5ForConditionalGeneration.from_pretrained(args.checkpoint).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{args.checkpoint}/tokenizer.json")
    failures = 0
    for text in args.inputs:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1,
                                 past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()))
        hf_tokens = out[0, 1:].tolist()
        calm = subprocess.run([args.calm, "generate", "--model", args.checkpoint, "--input", text,
                               "--never-exit", "--max-new-tokens", str(args.max_new_tokens), "--json"],
                              capture_output=True, text=True, check=True)
        calm_tokens = json.loads(calm.stdout)["tokens"]
        same = hf_tokens == calm_tokens
        failures += not same
        print(f"{'OK  ' if same else 'DIFF'} {text[:50]!r}: transformers {hf_tokens[:8]}... calm {calm_tokens[:8]}...")
        # Logits of the teacher-forced greedy output.
        with torch.inference_mode():
            logits = model(input_ids=ids, decoder_input_ids=out[:, :-1]).logits[0]
        print(f"     transformers logits[0][:4] = {[round(v, 5) for v in logits[0, :4].tolist()]}")
    print(f"loaded {args.checkpoint} with transformers; {len(args.inputs) - failures}/{len(args.inputs)} greedy outputs identical")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
