"""Reading `datasets/bible` files (JSONL, gzip allowed) for the probe scripts; standard library only."""
import gzip
import itertools
import json


def task_examples(path, task, limit=None):
    """The examples of one task in file order, at most `limit` of them (all when None)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        examples = (json.loads(line) for line in lines)
        yield from itertools.islice((e for e in examples if e["task"] == task), limit)
