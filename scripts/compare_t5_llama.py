#!/usr/bin/env python3
"""T5 (encoder-decoder) vs decoder-only CALM on the same task, data, delta and epsilon: one table
and one plot from the files that scripts/llama_default_reports.sh writes.

    python3 scripts/compare_t5_llama.py [--out reports/t5-vs-llama]

Reads, for each model: its main-job run folder (thresholds.json, frontier.json), its model card
numbers (`calm evaluate --json` on the first 500 modernize test examples) and its batch-1 time
split (`calm bench decode --data ... --thresholds ... --json`). Writes comparison.md and
comparison.svg/.png into --out. Needs `pip install matplotlib`.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODELS = [
    ("T5 (encoder-decoder)", "t5", "datasets/bible/model", "reports/bible-modernize-textual"),
    ("Llama (decoder-only)", "llama", "datasets/bible/model-llama", "reports/bible-llama-modernize-textual"),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def parameters(model_dir):
    """Parameter count from the safetensors header (the exit classifier excluded)."""
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or name.startswith("calm."):
            continue
        count = 1
        for d in info["shape"]:
            count *= d
        total += count
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="reports/t5-vs-llama")
    args = parser.parse_args()
    rows = []
    for label, key, model_dir, run in MODELS:
        thresholds = load(f"{run}/thresholds.json")
        frontier = load(f"{run}/frontier.json")
        card = load(f"{args.out}/evaluate-{key}.json")
        bench = load(f"{args.out}/bench-{key}.json")
        runs = {r["policy"]: r for r in bench["runs"] if r["batch"] == 1}
        rows.append(dict(label=label, key=key, model_dir=model_dir, run=run, thresholds=thresholds,
                         frontier=frontier, card=card, full=runs["full"], certified=runs.get("certified"),
                         params=parameters(model_dir)))

    lines = []
    t = rows[0]["thresholds"]
    delta, epsilon = t["inputs"]["delta"], t["inputs"]["epsilon"]
    lines.append(f"Same task (`modernize`), data (the first 1,000 calibration examples, 900 tested), "
                 f"δ = {delta}, ε = {epsilon}, Hoeffding–Bentkus p-values, fixed-sequence testing; "
                 f"quality on the first 500 test examples; time at batch 1, one thread, "
                 f"{rows[0]['full']['tokens']} / {rows[1]['full']['tokens']} generated tokens "
                 f"(`calm bench decode --data`, fastest of {load(f'{args.out}/bench-t5.json')['repeat']} runs).")
    lines.append("")
    header = ["", *[r["label"] for r in rows]]
    table = []

    def add(name, values):
        table.append([name, *values])

    add("parameters", [f"{r['params'] / 1e6:.2f} M" for r in rows])
    add("layers that can exit", [str(r["thresholds"]["cost_model"]["num_layers"]) for r in rows])
    add("full model BLEU (copy baseline)",
        [f"{r['card']['full']['bleu']:.2f} ({r['card']['copy_bleu']:.2f})" for r in rows])
    add("oracle: mean layers, BLEU",
        [f"{r['card']['oracle']['mean_layers']:.2f}, {r['card']['oracle']['bleu']:.2f}" for r in rows])
    add("layer L−1 agrees with the top", [f"{100 * r['card']['agreement'][-2]:.1f}%" for r in rows])
    for r in rows:
        s = r["thresholds"]["selected"]
        certified = r["thresholds"]["summary"]["certified"]
        r["selected_text"] = (f"never exit ({certified} certified, none cheaper than the full model)" if s["never_exit"] else
                              f"{s['measure']} τ {s['tau']:g} λ {s['lambda']:.4g}: risk {s['risk']:.4f}, "
                              f"p {s['p_value']:.2g}")
    add(f"certified at δ {delta} (n = {rows[0]['thresholds']['inputs'].get('examples', '')})".replace(" (n = )", ""),
        [r["selected_text"] for r in rows])
    add("certified mean layers", [f"{r['thresholds']['selected']['mean_layers']:.2f}" for r in rows])
    add("main job's held-out wall-clock speed-up (2 jobs, 200 test examples)",
        [f"×{r['thresholds']['run']['benchmark']['wall_clock_speedup']:.2f}"
         if r["thresholds"]["run"].get("benchmark") else "–" for r in rows])
    for r in rows:
        r["split_full"] = r["full"]["time_split"]
    add("prefill ms per example (full model)", [f"{r['split_full']['prefill_ms_per_example']:.2f}" for r in rows])
    add("decode ms per token, full model", [f"{r['full']['decoder_ms_per_token']:.3f}" for r in rows])
    for part, name in [("layers", "layers"), ("propagation", "K/V propagation"), ("exit_checks", "exit checks"),
                       ("head", "exit head"), ("other", "other")]:
        cells = []
        for r in rows:
            c = r["certified"]
            full = r["split_full"][f"{part}_ms_per_token"]
            cert = c["time_split"][f"{part}_ms_per_token"] if c else None
            cells.append(f"{full:.3f} → {cert:.3f}" if cert is not None else f"{full:.3f}")
        add(f"  {name} (full → certified)", cells)
    add("decode ms per token, certified",
        [f"{r['certified']['decoder_ms_per_token']:.3f} (mean layers {r['certified']['mean_layers']:.2f})"
         if r["certified"] else "–" for r in rows])
    add("measured decode speed-up at batch 1 (bench)",
        [f"×{r['certified']['decoder_speedup']:.2f}" if r["certified"] else "–" for r in rows])
    add("end-to-end speed-up with prefill (bench)",
        [f"×{end_to_end(r):.2f}" if r["certified"] else "–" for r in rows])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in table:
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Frontier (certified configuration at each δ; held-out wall-clock speed-up of the main job):")
    lines.append("")
    deltas = [f["delta"] for f in rows[0]["frontier"]]
    lines.append("| δ | " + " | ".join(r["label"] for r in rows) + " |")
    lines.append("|---|" + "---|" * len(rows))
    for i, d in enumerate(deltas):
        cells = []
        for r in rows:
            f = next((x for x in r["frontier"] if abs(x["delta"] - d) < 1e-12), None)
            if f is None or f["measure"] is None:
                cells.append("never exit")
            else:
                held = (f.get("held_out") or {}).get("wall_clock_speedup")
                cells.append(f"{f['measure']} λ {f['lambda']:.4g}: {f['mean_layers']:.2f} layers"
                             + (f", ×{held:.2f}" if held else ""))
        lines.append(f"| {d:g} | " + " | ".join(cells) + " |")
    os.makedirs(args.out, exist_ok=True)
    with open(f"{args.out}/comparison.md", "w") as f:
        f.write("\n".join(lines) + "\n")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r, style in zip(rows, ["o-", "s--"]):
        fr = r["frontier"]
        left.plot([f["delta"] for f in fr],
                  [(f.get("held_out") or {}).get("wall_clock_speedup", 1.0) or 1.0 for f in fr], style, label=r["label"])
        right.plot([f["delta"] for f in fr], [f["mean_layers"] for f in fr], style, label=r["label"])
    left.set_xlabel("δ (risk bound)")
    left.set_ylabel("held-out wall-clock speed-up")
    left.set_title(f"certified speed-up (ε = {epsilon})")
    right.set_xlabel("δ (risk bound)")
    right.set_ylabel("certified mean layers of 8")
    right.set_title("certified depth")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{args.out}/comparison.svg")
    fig.savefig(f"{args.out}/comparison.png", dpi=100)
    print("\n".join(lines))


def end_to_end(r):
    """Speed-up of prefill + decoding together: the bench's seconds for the same examples."""
    return r["full"]["seconds"] / r["certified"]["seconds"]


if __name__ == "__main__":
    main()
