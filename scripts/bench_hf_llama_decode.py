"""Time Hugging Face transformers' greedy decoding of a decoder-only model (a GGUF file,
de-quantized to f32 by transformers, or a checkpoint directory) on random prompts, batch 1,
one thread, KV cache on, beside `calm bench decode` on the same file. Prints prefill-free
decoder ms/token and tokens/s as JSON.

    python3 scripts/bench_hf_llama_decode.py --model models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        [--threads 1] [--examples 4] [--input-tokens 24] [--max-new-tokens 32]
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--input-tokens", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model.endswith(".gguf"):
        directory, name = os.path.split(os.path.abspath(args.model))
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(11)
    inputs = torch.randint(17, vocab, (args.examples, args.input_tokens), generator=g)
    kwargs = dict(do_sample=False, num_beams=1, min_new_tokens=args.max_new_tokens,
                  max_new_tokens=args.max_new_tokens, pad_token_id=0)
    best = None
    with torch.inference_mode():
        model.generate(inputs[:1], **kwargs)
        for _ in range(args.repeat):
            start = time.perf_counter()
            for row in inputs:
                model(row[None, :])
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            tokens = 0
            for row in inputs:
                out = model.generate(row[None, :], **kwargs)
                tokens += out.shape[1] - row.shape[0]
            seconds = time.perf_counter() - start
            if best is None or seconds < best[1]:
                best = (tokens, seconds, prefill)
    tokens, seconds, prefill = best
    # The first new token comes from the prefill; the rest are decoding steps.
    steps = tokens - args.examples
    print(json.dumps({
        "engine": f"transformers {__import__('transformers').__version__} (torch {torch.__version__}), f32",
        "model": args.model, "threads": args.threads, "batch": 1, "examples": args.examples,
        "input_tokens": args.input_tokens, "tokens": tokens, "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "decoder_ms_per_token": (seconds - prefill) * 1000 / max(steps, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
