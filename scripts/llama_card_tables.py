#!/usr/bin/env python3
"""The number tables of datasets/bible/model-llama/MODEL.md, from the files that
scripts/train_llama_model.sh and scripts/llama_default_reports.sh write:

    python3 scripts/llama_card_tables.py > /tmp/tables.md

- reports/t5-vs-llama/evaluate-llama.json (`calm evaluate --json`, first 500 modernize test examples):
  BLEU, ROUGE-L, mean layers and agreement of every exit layer, the full model and the oracle;
- datasets/bible/model-llama/training/classifier_f1.txt (`calm train-classifier --eval`'s table);
- datasets/bible/model-llama/training/train_log.csv: the mean loss and per-layer NLL of the last
  100 steps, and the wall time.
"""
import csv
import json

card = json.load(open("reports/t5-vs-llama/evaluate-llama.json"))
print(f"Copy-the-input baseline: BLEU **{card['copy_bleu']:.2f}**. Full model: BLEU **{card['full']['bleu']:.2f}** "
      f"({card['examples']} examples).")
print()
print("| decoder | BLEU | ROUGE-L | mean layers | agrees with top layer |")
print("|---|---|---|---|---|")
top = len(card["layers"])
for i, row in enumerate(card["layers"], start=1):
    name = f"exit at layer {i}" if i < top else f"full model (layer {top})"
    print(f"| {name} | {row['bleu']:.2f} | {row['rouge_l']:.2f} | {row['mean_layers']:.2f} | {100 * card['agreement'][i - 1]:.1f}% |")
o = card["oracle"]
print(f"| oracle | {o['bleu']:.2f} | {o['rouge_l']:.2f} | {o['mean_layers']:.2f} | |")
print()
print("| layer | tokens where layer i agrees with the top layer | F1 (exit) | F1 (don't exit) |")
print("|---|---|---|---|")
for line in open("datasets/bible/model-llama/training/classifier_f1.txt"):
    fields = line.split()
    if fields and fields[0].isdigit():
        print(f"| {fields[0]} | {fields[1]} | {fields[2]} | {fields[3]} |")
print()
rows = list(csv.DictReader(open("datasets/bible/model-llama/training/train_log.csv")))
last = rows[-100:]
nll = [k for k in rows[0] if k.startswith("nll_layer")]
mean = lambda k: sum(float(r[k]) for r in last) / len(last)
print(f"Steps {rows[-1]['step']}, wall {float(rows[-1]['elapsed_s']):.0f} s, "
      f"completion tokens {int(rows[-1]['tokens_seen']):,}. Mean of the last 100 steps: loss {mean('loss'):.3f}, "
      + ", ".join(f"layer {k[9:]} NLL {mean(k):.2f}" for k in nll))
