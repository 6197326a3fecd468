#!/usr/bin/env python3
"""Teacher-forced NLL per task of calm checkpoints, computed by transformers (an independent
implementation): the mean over reference tokens (with `</s>`) of the first N test examples of
each task, both sides cut to 64 tokens as in `calm train`.

    python3 scripts/task_nll.py MODEL_DIR [MODEL_DIR ...] [-n 300] [--data datasets/bible/test.jsonl.gz]

Needs `pip install torch transformers`.
"""
import argparse

import torch
from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration

from bible_examples import task_examples

EOS, PAD, IGNORE = 1, 0, -100


def task_nll(model, tokenizer, examples, batch=50):
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            sources = [tokenizer.encode(e["input"])[:63] + [EOS] for e in chunk]
            targets = [tokenizer.encode(e["reference"])[:63] + [EOS] for e in chunk]
            width = max(map(len, sources))
            ids = torch.tensor([s + [PAD] * (width - len(s)) for s in sources])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
            depth = max(map(len, targets))
            labels = torch.tensor([t + [IGNORE] * (depth - len(t)) for t in targets])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
            tokens = sum(map(len, targets))
            total += loss * tokens
            count += tokens
    return total / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--data", default="datasets/bible/test.jsonl.gz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = ("translate-en-fr", "modernize")
    examples = {task: list(task_examples(args.data, task, args.n)) for task in tasks}
    for directory in args.models:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{directory}/tokenizer.json")
        model = T5ForConditionalGeneration.from_pretrained(directory).eval()
        scores = "  ".join(
            f"{task} {task_nll(model, tokenizer, examples[task]):.3f}" for task in tasks
        )
        print(f"{directory}: {scores}")


if __name__ == "__main__":
    main()
