#!/usr/bin/env python3
"""Quick quality probe of a checkpoint, for watching a training run: greedy full-model outputs of
`calm generate` on the first N test examples of one task, their corpus BLEU (sacrebleu defaults),
two fluency proxies, and, for `modernize`, the copy-the-input baseline's BLEU on the same examples.
The proxies: the share of output words that occur in the task's training references (made-up
words such as "dénes" do not), and the share of outputs stuck in a loop (a word trigram that
occurs three times or more).

    python3 scripts/quick_bleu.py MODEL_DIR [--task translate-en-fr] [-n 100] [--samples 5]
        [--calm target/debug/calm] [--data datasets/bible/test.jsonl.gz]

Needs `pip install sacrebleu`. `scripts/model_card.sh` gives the full numbers of the model card.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import sacrebleu

from bible_examples import task_examples

WORD = re.compile(r"\w+")


def training_words(path, task):
    """Lower-cased words of the task's training references."""
    words = set()
    for example in task_examples(path, task):
        words.update(WORD.findall(example["reference"].lower()))
    return words


def is_looping(text):
    """A word trigram occurs three times or more."""
    words = text.split()
    counts = {}
    for i in range(len(words) - 2):
        trigram = tuple(words[i : i + 3])
        counts[trigram] = counts.get(trigram, 0) + 1
    return any(count >= 3 for count in counts.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--task", default="translate-en-fr")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--samples", type=int, default=5)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    parser.add_argument("--calm", default=os.path.join(target, "debug", "calm"))
    parser.add_argument("--data", default="datasets/bible/test.jsonl.gz")
    parser.add_argument("--train", default="datasets/bible/train.jsonl.gz")
    args = parser.parse_args()

    examples = list(task_examples(args.data, args.task, args.n))
    if not examples:
        sys.exit(f"{args.data}: no example of task {args.task}")
    inputs = "".join(example["input"] + "\n" for example in examples)
    run = subprocess.run(
        [args.calm, "generate", "--model", args.model, "--input", "-"],
        input=inputs, capture_output=True, text=True, check=True,
    )
    outputs = [json.loads(line)["text"] for line in run.stdout.splitlines()]
    references = [example["reference"] for example in examples]
    bleu = sacrebleu.corpus_bleu(outputs, [references]).score
    print(f"{args.task}: BLEU {bleu:.2f} on the first {len(examples)} test examples")
    known = training_words(args.train, args.task)
    for name, texts in (("outputs", outputs), ("references", references)):
        words = [word for text in texts for word in WORD.findall(text.lower())]
        in_vocabulary = sum(word in known for word in words) / max(1, len(words))
        looping = sum(is_looping(text) for text in texts) / len(texts)
        print(f"{name}: {100 * in_vocabulary:.1f}% of {len(words)} words occur in the training "
              f"references; {100 * looping:.0f}% loop")
    if args.task == "modernize":
        sources = [example["input"].split(": ", 1)[1] for example in examples]
        copy = sacrebleu.corpus_bleu(sources, [references]).score
        print(f"copy-the-input baseline: BLEU {copy:.2f}")
    step = max(1, len(examples) // max(1, args.samples))
    for example, output in list(zip(examples, outputs))[::step][: args.samples]:
        print(f"\n{example['id']}\n  input:     {example['input']}\n"
              f"  reference: {example['reference']}\n  output:    {output}")


if __name__ == "__main__":
    main()
