"""Time Hugging Face transformers' greedy T5 decoding on the same random model size as
`calm bench decode` (d_model 256, 4 encoder / 8 decoder layers, 4 heads, d_ff 1024, vocab 8000,
gated-gelu), batch 1 and 16 (or --batch), one thread, KV cache on. Prints decoder ms/token and
tokens/s (and writes them to --json FILE).

    python3 scripts/bench_hf_decode.py [--threads 1] [--examples 8] [--max-new-tokens 32] [--batch 1,16,64]
"""
import argparse
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--input-tokens", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=str, default="1,16")
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args()
    results = []
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = T5Config(vocab_size=8000, d_model=256, d_kv=64, num_heads=4, d_ff=1024, num_layers=4,
                      num_decoder_layers=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(11)
    inputs = torch.randint(3, 8000, (args.examples, args.input_tokens), generator=g)
    inputs[:, -1] = 1
    for batch in [int(b) for b in args.batch.split(",")]:
        chunks = [inputs[i:i + batch] for i in range(0, args.examples, batch)]
        with torch.inference_mode():
            kwargs = dict(do_sample=False, num_beams=1, min_new_tokens=args.max_new_tokens,
                          max_new_tokens=args.max_new_tokens)
            model.generate(chunks[0], past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()), **kwargs)
            start = time.perf_counter()
            for chunk in chunks:
                model.encoder(input_ids=chunk)
            encoder_seconds = time.perf_counter() - start
            start = time.perf_counter()
            tokens = 0
            for chunk in chunks:
                out = model.generate(chunk, past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()), **kwargs)
                tokens += (out.shape[1] - 1) * out.shape[0]
            seconds = time.perf_counter() - start
        decoder_ms = (seconds - encoder_seconds) * 1000 / tokens
        print(f"transformers {torch.__version__}: batch {batch}: {tokens} tokens in {seconds:.3f} s = "
              f"{tokens / seconds:.1f} tokens/s, decoder {decoder_ms:.3f} ms/token ({args.threads} thread)")
        results.append(dict(batch=batch, tokens=tokens, seconds=seconds,
                            tokens_per_second=tokens / seconds, decoder_ms_per_token=decoder_ms))
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(dict(engine="transformers", transformers=__import__("transformers").__version__,
                           torch=torch.__version__, threads=args.threads, examples=args.examples,
                           input_tokens=args.input_tokens, max_new_tokens=args.max_new_tokens,
                           runs=results), f, indent=2)


if __name__ == "__main__":
    main()
