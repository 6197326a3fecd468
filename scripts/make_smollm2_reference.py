#!/usr/bin/env python3
"""Reference outputs for SmolLM2-135M-Instruct (Q4_1 GGUF) from Hugging Face transformers.

Needs the model file first:   bash scripts/fetch_smollm2.sh
Then:                         python3 scripts/make_smollm2_reference.py
Writes tests/fixtures/smollm2_reference.json.

transformers dequantizes the GGUF to float32 (and un-permutes attn_q/attn_k back
to the Hugging Face rotary layout), runs eager attention on CPU, one thread.
"""

import json
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

torch.set_num_threads(1)

import gguf  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from gguf import GGUFReader, GGUFValueType  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "smollm2")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2_reference.json")
MAX_NEW = 32
TOPK = 5

VERSES = [
    "In the beginning God created the heaven and the earth.",
    "And God said, Let there be light: and there was light.",
    "Jesus wept.",
    "The LORD is my shepherd; I shall not want.",
    "Blessed are the meek: for they shall inherit the earth.",
    "Thy word is a lamp unto my feet, and a light unto my path.",
    "For God so loved the world, that he gave his only begotten Son.",
    "Honour thy father and thy mother: that thy days may be long upon the land.",
]

TEST_STRINGS = [
    "In 1611 there were 66 books",
    "Hello, world! How's it going? (Fine.) -- ok... \"quoted\" [x] {y}; a/b",
    "line one\nline two\n\n  indented\ttab\r\nend",
    "Praise be \U0001F64F to God \u271D\uFE0F",
    "   leading spaces and trailing  ",
    "<|im_start|>user",
    "<|im_start|>user\nmodernize: Thou shalt not kill.<|im_end|>\n",
    "thee thou thy thine hath doth saith unto",
    "Caf\u00e9 na\u00efve fa\u00e7ade \u2014 \u201cquotes\u201d \u2018apostrophes\u2019",
    "3.14159 and 2,000,000 and 1st 2nd 3rd x2 A10",
]

BIG_ARRAYS = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}


def r6(x):
    return float(f"{x:.6g}")


def field_value(field):
    types = field.types
    if types[0] == GGUFValueType.ARRAY:
        n = len(field.data)
        if field.name in BIG_ARRAYS:
            head = [field.contents(i) for i in range(min(n, 20))]
            return {"array_len": n, "elem_type": types[-1].name, "first_20": head}
        return field.contents()
    v = field.contents()
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def gguf_metadata(path):
    r = GGUFReader(path)
    meta = {}
    types = {}
    for name, field in r.fields.items():
        meta[name] = field_value(field)
        types[name] = "/".join(t.name for t in field.types)
    toks = r.fields["tokenizer.ggml.tokens"]
    ttype = r.fields["tokenizer.ggml.token_type"]
    tok_strings = [toks.contents(i) for i in range(len(toks.data))]
    tok_types = [int(ttype.contents(i)) for i in range(len(ttype.data))]
    non_normal = [
        {"id": i, "token": tok_strings[i], "token_type": tok_types[i]}
        for i in range(len(tok_types))
        if tok_types[i] != 1
    ]
    tensors = [
        {"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape]}
        for t in r.tensors
    ]
    type_counts = {}
    for t in tensors:
        type_counts[t["type"]] = type_counts.get(t["type"], 0) + 1
    names = {t["name"] for t in tensors}
    return dict(
        keys=meta,
        key_types=types,
        tokenizer_ggml_pre=meta.get("tokenizer.ggml.pre"),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        add_bos_token=meta.get("tokenizer.ggml.add_bos_token"),
        chat_template=meta.get("tokenizer.chat_template"),
        non_normal_tokens=non_normal,
        tensor_type_counts=type_counts,
        has_output_weight="output.weight" in names,
        tensors=tensors,
    )


@torch.no_grad()
def per_layer_logits(model, ids):
    """[L] tensors [seq, vocab]: lm_head(norm(output of decoder layer i)), i = 1..L."""
    layers = model.model.layers
    L = len(layers)
    captured = [None] * L
    hooks = []
    for i, layer in enumerate(layers):
        def hook(_m, _inp, out, i=i):
            captured[i] = (out[0] if isinstance(out, tuple) else out).detach()
        hooks.append(layer.register_forward_hook(hook))
    try:
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    hs = out.hidden_states
    assert len(hs) == L + 1
    for i in range(1, L):
        assert torch.equal(hs[i], captured[i - 1]), i
    logits = [model.lm_head(model.model.norm(h))[0] for h in captured]
    diff = (logits[-1] - out.logits[0]).abs().max().item()
    assert diff < 1e-3, diff
    logits[-1] = out.logits[0]
    return logits


def main():
    path = os.path.join(MODEL_DIR, GGUF_NAME)
    if not os.path.exists(path):
        print(f"missing {path}: run scripts/fetch_smollm2.sh first", file=sys.stderr)
        return 1

    meta = gguf_metadata(path)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(
        MODEL_DIR, gguf_file=GGUF_NAME, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    L = model.config.num_hidden_layers
    gen_eos = model.generation_config.eos_token_id
    eos_ids = sorted({*(gen_eos if isinstance(gen_eos, list) else [gen_eos])} - {None})

    bt = tok.backend_tokenizer
    tokenizer_info = dict(
        cls=type(tok).__name__,
        bos_token=tok.bos_token,
        bos_token_id=tok.bos_token_id,
        eos_token=tok.eos_token,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        unk_token_id=tok.unk_token_id,
        vocab_size=len(tok),
        special_tokens=sorted(
            ({"id": i, "content": t.content, "special": t.special} for i, t in tok.added_tokens_decoder.items()),
            key=lambda d: d["id"],
        ),
        backend_pre_tokenizer=json.loads(bt.to_str()).get("pre_tokenizer"),
        backend_normalizer=json.loads(bt.to_str()).get("normalizer"),
        backend_decoder=json.loads(bt.to_str()).get("decoder"),
        generation_config_eos_token_id=gen_eos,
        generation_config_bos_token_id=model.generation_config.bos_token_id,
        generation_config_pad_token_id=model.generation_config.pad_token_id,
        model_config_eos_token_id=model.config.eos_token_id,
        model_config_bos_token_id=model.config.bos_token_id,
    )

    test_strings = []
    for s in TEST_STRINGS:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        test_strings.append(
            dict(
                text=s,
                ids=ids,
                tokens=tok.convert_ids_to_tokens(ids),
                ids_add_special_tokens=tok(s, add_special_tokens=True)["input_ids"],
                decoded=tok.decode(ids),
            )
        )

    cases = []
    for verse in VERSES:
        content = "modernize: " + verse
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids_special = tok(prompt, add_special_tokens=True)["input_ids"]
        ids = torch.tensor([prompt_ids])
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=MAX_NEW,
            min_new_tokens=MAX_NEW,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0],
        )
        new_ids = gen[0, len(prompt_ids):].tolist()
        assert len(new_ids) == MAX_NEW

        logits = per_layer_logits(model, torch.tensor([prompt_ids + new_ids]))
        P = len(prompt_ids)
        rows = slice(P - 1, P - 1 + MAX_NEW)  # positions whose next token is new_ids[k]
        layer_argmax = torch.stack([lg[rows].argmax(-1) for lg in logits], dim=1)  # [MAX_NEW, L]
        final = logits[-1][rows]
        raw_argmax = final.argmax(-1).tolist()
        # generate() with min_new_tokens suppresses the EOS ids, so it may differ from the raw argmax there.
        masked = final.clone()
        masked[:, eos_ids] = float("-inf")
        assert masked.argmax(-1).tolist() == new_ids, (verse, masked.argmax(-1).tolist(), new_ids)
        first_eos = next((k for k, t in enumerate(raw_argmax) if t in eos_ids), None)
        top = final.topk(TOPK, dim=-1)
        cases.append(
            dict(
                content=content,
                prompt=prompt,
                prompt_ids=prompt_ids,
                prompt_ids_add_special_tokens=ids_special,
                bos_added_by_add_special_tokens=ids_special[:1] == [tok.bos_token_id]
                and prompt_ids[:1] != [tok.bos_token_id],
                greedy_new_ids=new_ids,
                greedy_text=tok.decode(new_ids),
                greedy_text_until_eos=tok.decode(new_ids[:first_eos] if first_eos is not None else new_ids),
                raw_final_argmax=raw_argmax,
                first_raw_eos_index=first_eos,
                final_top5_ids=top.indices.tolist(),
                final_top5_logits=[[r6(v) for v in row] for row in top.values.tolist()],
                layer_argmax=layer_argmax.tolist(),
            )
        )
        agree = (layer_argmax == layer_argmax[:, -1:]).float().mean(0).tolist()
        print(f"{verse!r}: {len(prompt_ids)} prompt ids, eos@{first_eos}: {cases[-1]['greedy_text_until_eos']!r}")
        print("   per-layer agreement with final:", " ".join(f"{a:.2f}" for a in agree))

    ref = dict(
        model_file=GGUF_NAME,
        model_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        num_layers=L,
        max_new_tokens=MAX_NEW,
        min_new_tokens=MAX_NEW,
        suppressed_eos_ids=eos_ids,
        notes=(
            "greedy_new_ids come from generate(do_sample=False, min_new_tokens=max_new_tokens): "
            "EOS ids are masked to -inf at every step, so after first_raw_eos_index the text is "
            "what the model says once EOS is forbidden. layer_argmax[k][i] = argmax of "
            "lm_head(final_norm(output of decoder layer i+1)) at the position predicting "
            "greedy_new_ids[k] (teacher forced, no EOS mask); the last column is the model's own "
            "argmax (raw_final_argmax). Weights: GGUF dequantized to float32 by transformers."
        ),
        versions=dict(
            torch=torch.__version__,
            transformers=transformers.__version__,
            tokenizers=tokenizers.__version__,
            gguf=getattr(gguf, "__version__", None) or _dist_version("gguf"),
        ),
        model_config=json.loads(model.config.to_json_string()),
        gguf=meta,
        tokenizer=tokenizer_info,
        test_strings=test_strings,
        cases=cases,
    )
    tmp = OUT + ".tmp-write"
    with open(tmp, "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")
    return 0


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
