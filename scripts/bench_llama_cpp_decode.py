"""Time llama.cpp (its Python binding, `pip install llama-cpp-python`, built from the sdist
here) on greedy decoding of a GGUF file, batch 1, one thread, on random prompts as
`scripts/bench_hf_llama_decode.py` makes them. Prints prefill-free decoder ms/token and
tokens/s as JSON.

    python3 scripts/bench_llama_cpp_decode.py --model models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import random
import time

import llama_cpp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--input-tokens", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=256, n_threads=args.threads,
                          n_threads_batch=args.threads, n_batch=64, verbose=False)
    vocab = llm.n_vocab()
    rng = random.Random(11)
    prompts = [[rng.randrange(17, vocab) for _ in range(args.input_tokens)] for _ in range(args.examples)]

    def decode(prompt):
        llm.reset()
        llm.eval(prompt)
        tokens = 0
        for step in range(args.max_new_tokens):
            token = llm.sample(top_k=1, temp=0.0)
            tokens += 1
            if step + 1 < args.max_new_tokens:
                llm.eval([token])
        return tokens

    decode(prompts[0])
    best = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        for prompt in prompts:
            llm.reset()
            llm.eval(prompt)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        tokens = sum(decode(p) for p in prompts)
        seconds = time.perf_counter() - start
        if best is None or seconds < best[1]:
            best = (tokens, seconds, prefill)
    tokens, seconds, prefill = best
    steps = tokens - args.examples
    print(json.dumps({
        "engine": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, weights as stored",
        "model": args.model, "threads": args.threads, "batch": 1, "examples": args.examples,
        "input_tokens": args.input_tokens, "tokens": tokens, "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "decoder_ms_per_token": (seconds - prefill) * 1000 / max(steps, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
