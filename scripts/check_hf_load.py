"""Check that a checkpoint written by `calm train` loads in Hugging Face transformers and decodes
exactly as calm does: the same greedy token ids. T5 checkpoints load as
T5ForConditionalGeneration, decoder-only ones (`calm train --architecture llama`) as
LlamaForCausalLM, whose prompt is `tokenizer(text)` (the tokenizer appends `<sep>`) and whose
output is what follows the prompt.

    python3 scripts/check_hf_load.py CHECKPOINT_DIR [--calm PATH_TO_CALM_BINARY] [--inputs TEXT ...]
        [--test-examples N]   # instead of --inputs: the first N modernize test examples

Needs `pip install torch transformers`. Not part of CI (CI has no Python requirement); the Rust
tests cover the same format against fixtures that transformers produced.
"""
import argparse
import json
import subprocess
import sys

import torch
import gzip
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, T5ForConditionalGeneration
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
    parser.add_argument("--test-examples", type=int, default=0,
                        help="check the first N modernize examples of datasets/bible/test.jsonl.gz instead")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with open(f"{args.checkpoint}/config.json") as f:
        decoder_only = json.load(f).get("model_type") == "llama"
    if args.test_examples:
        with gzip.open("datasets/bible/test.jsonl.gz", "rt") as f:
            rows = [json.loads(line) for line in f]
        args.inputs = [r["input"] for r in rows if r["task"] == "modernize"][:args.test_examples]
    if decoder_only:
        model = LlamaForCausalLM.from_pretrained(args.checkpoint).eval()
    else:
        model = T5ForConditionalGeneration.from_pretrained(args.checkpoint).eval()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{args.checkpoint}/tokenizer.json")
    failures = 0
    for text in args.inputs:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            if decoder_only:
                out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1,
                                     eos_token_id=model.config.eos_token_id, pad_token_id=0)
                hf_tokens = out[0, ids.shape[1]:].tolist()
            else:
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
    print(f"loaded {args.checkpoint} with transformers; {len(args.inputs) - failures}/{len(args.inputs)} greedy outputs identical")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
