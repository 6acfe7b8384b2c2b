#!/usr/bin/env python3
"""Convert the tiny shared fixture checkpoints to GGUF files and verify them with transformers.

Input: ../shared/fixtures/models/{llama,mistral,qwen2,qwen3,gemma2,phi3,gpt2} (safetensors float32,
one shared byte-level BPE tokenizer). Output: tests/fixtures/gguf/<family>-<type>.gguf, written with
the `gguf` package (gguf-py 0.19.0) following llama.cpp's convert_hf_to_gguf.py conventions:

  * tensor names from gguf.get_tensor_name_map(MODEL_ARCH.<arch>, n_layers) (token_embd, blk.N.attn_q,
    ..., output_norm, output); tied embeddings get no `output.weight`;
  * llama / mistral (both written as arch "llama", as llama.cpp does for MistralForCausalLM): the
    attn_q / attn_k rows are permuted for llama.cpp's interleaved RoPE,
    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols), with n_kv_head
    for k; qwen2 / qwen3 / gemma2 / phi3 use NeoX RoPE in llama.cpp and are not permuted;
  * gemma2: every norm weight is stored as 1 + w (llama.cpp's RMSNorm multiplies by w);
  * gpt2: Conv1D weights (c_attn, c_proj, c_fc) transposed to [out, in]; attn.bias buffers dropped;
  * phi3: qkv_proj -> attn_qkv and gate_up_proj -> ffn_up (fused, as llama.cpp keeps them);
  * metadata {arch}.block_count, .context_length, .embedding_length, .feed_forward_length,
    .attention.head_count, .attention.head_count_kv, .attention.key_length/.value_length (where the
    config has head_dim), .rope.freq_base, .rope.dimension_count, .attention.layer_norm_rms_epsilon
    (.attention.layer_norm_epsilon for gpt2), .vocab_size, gemma2's soft-caps and sliding window,
    phi3's rope.scaling.original_context_length and sliding_window (0 = none);
  * the tokenizer as tokenizer.ggml.model = "gpt2", .pre = "gpt-2" (the fixture tokenizer is GPT-2's
    byte-level regex), .tokens, .token_type (3 = control for the added special tokens, 1 = normal),
    .merges ("a b"), bos/eos/padding ids, add_bos_token / add_eos_token = false.

F32 for every family (2-D and 1-D tensors float32); for llama also F16, Q8_0, Q4_0 and Q4_1: every 2-D
weight in that type (like `llama-quantize --pure`), 1-D tensors (norms, biases) F32. K-quants cannot be
written: gguf-py 0.19.0 only dequantizes them, and their 256-wide blocks do not fit 64-wide rows anyway.

Verification (with --verify, the default): each file is loaded with transformers
(from_pretrained(dir, gguf_file=...)) and compared, in float64, with the safetensors checkpoint: the
last-position logits on the shared fixtures' prompts (for a quantized file against the safetensors
model whose weights went through gguf.quants.quantize -> dequantize, which the GGUF must reproduce
exactly, and against the unquantized model to show the quantization error), and the tokenizer ids on
those prompts plus a few harder strings. Results, and the float64 reference logits of every file, go
to tests/fixtures/gguf/expected.json.

Usage: .venv-torch/bin/python tools/fixtures_to_gguf.py [--fixtures DIR] [--out DIR] [--no-verify]
"""
import argparse
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT.parent / "shared" / "fixtures"
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "gguf"

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "gpt2"]
LLAMA_QUANTS = ["F16", "Q8_0", "Q4_0", "Q4_1"]
GGUF_ARCH = {"llama": "LLAMA", "mistral": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3", "gemma2": "GEMMA2",
             "phi3": "PHI3", "gpt2": "GPT2"}
EXTRA_TOKENIZER_TEXTS = [
    "Hello world", "  two  spaces and a\nnewline\n\n", "In 2024, 1234 people paid $5.99 each!",
    "Le café coûte 3 € à Zürich, n'est-ce pas ?", "東京は日本の首都です。", "emoji 🙂 and tabs\tend",
    "<|bos|>special<|eos|>", "don't you're we'll I'd",
]


def load_hf(model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager",
                                                dtype=torch.float32).eval()


def permute(w, n_head, n_head_kv=None):
    """llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(family, cfg, state):
    """(gguf name, float32 numpy array) in llama.cpp's layout, from an HF state dict."""
    import gguf
    n_layer = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCH[family]), n_layer)
    out = []
    for name, t in state.items():
        if family == "gpt2" and name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue  # llama.cpp writes no output tensor for tied embeddings
        w = t.detach().to(torch.float32).numpy().copy()
        if family in ("llama", "mistral"):
            if name.endswith("q_proj.weight"):
                w = permute(w, cfg["num_attention_heads"], cfg["num_attention_heads"])
            elif name.endswith("k_proj.weight"):
                w = permute(w, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        if family == "gemma2" and name.endswith("norm.weight"):
            w = w + 1.0
        if family == "gpt2" and name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            w = np.ascontiguousarray(w.T)
        new = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"{family}: no GGUF name for {name}")
        out.append((new, w))
    return out


def write_metadata(w, family, cfg, tok_dir):
    import gguf
    arch = gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, GGUF_ARCH[family])]
    w.add_name(f"tiny-{family}")  # not "mistral": transformers would then look for a gguf arch "mistral"
    w.add_description(f"tiny random-weight {family} fixture from ../shared/fixtures/models/{family}, "
                      "converted by tools/fixtures_to_gguf.py")
    rope_theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta"))
    if family == "gpt2":
        w.add_block_count(cfg["n_layer"])
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(cfg["n_embd"])
        w.add_feed_forward_length(cfg.get("n_inner") or 4 * cfg["n_embd"])  # llama.cpp writes 4*n_embd
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    else:
        hidden, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or hidden // n_head
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(hidden)
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(n_head)
        w.add_head_count_kv(cfg.get("num_key_value_heads") or n_head)
        w.add_rope_freq_base(rope_theta)
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        if cfg.get("head_dim") is not None:  # TextModel.set_gguf_parameters writes these when stated
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if family in ("llama", "mistral"):
            w.add_rope_dimension_count(head_dim)
        if family == "phi3":
            rot = (cfg.get("rope_parameters") or {}).get("partial_rotary_factor", 1.0)
            w.add_rope_dimension_count(int(rot * hidden) // n_head)
            w.add_rope_scaling_orig_ctx_len(cfg["original_max_position_embeddings"])
            w.add_sliding_window(cfg.get("sliding_window") or 0)
        if family == "gemma2":
            w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
            w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
            w.add_sliding_window(cfg["sliding_window"])
            # llama.cpp hard-codes gemma2's query scale (1/sqrt(key_length), 27B: 1/sqrt(n_embd/n_head))
            # and cannot express query_pre_attn_scalar = 24; the general key says it for other readers.
            w.add_attention_scale(cfg["query_pre_attn_scalar"] ** -0.5)
    w.add_vocab_size(cfg["vocab_size"])

    tj = json.loads((tok_dir / "tokenizer.json").read_text())
    tc = json.loads((tok_dir / "tokenizer_config.json").read_text())
    vocab = tj["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"] for a in tj["added_tokens"] if a.get("special")}
    for a in tj["added_tokens"]:
        if tokens[a["id"]] is None:
            tokens[a["id"]] = a["content"]
    assert None not in tokens
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    ids = {a["content"]: a["id"] for a in tj["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
                       for i in range(len(tokens))])
    w.add_token_merges(merges)
    for key, setter in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                        ("pad_token", w.add_pad_token_id), ("unk_token", w.add_unk_token_id)):
        if tc.get(key) in ids:
            setter(ids[tc[key]])
    w.add_add_bos_token(bool(tc.get("add_bos_token", False)))
    w.add_add_eos_token(bool(tc.get("add_eos_token", False)))
    return arch


def convert(family, qtype, fixtures, out_dir):
    """Write <family>-<qtype>.gguf; returns (path, the dequantized weights per gguf name)."""
    import gguf
    from safetensors.torch import load_file
    model_dir = fixtures / "models" / family
    cfg = json.loads((model_dir / "config.json").read_text())
    state = load_file(str(model_dir / "model.safetensors"))
    path = out_dir / f"{family}-{qtype.lower()}.gguf"
    qt = getattr(gguf.GGMLQuantizationType, qtype)
    ftype = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
             "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
             "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1}[qtype]
    arch = gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, GGUF_ARCH[family])]
    w = gguf.GGUFWriter(str(path), arch)
    write_metadata(w, family, cfg, model_dir)
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    roundtrip = {}
    for name, t in gguf_tensors(family, cfg, state):
        if t.ndim == 2 and qt != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(t, qt)
            w.add_tensor(name, data, raw_dtype=qt if qt != gguf.GGMLQuantizationType.F16 else None)
            roundtrip[name] = gguf.quants.dequantize(data, qt).astype(np.float32).reshape(t.shape)
        else:
            w.add_tensor(name, t)
            roundtrip[name] = t
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, roundtrip


def roundtrip_state(family, cfg, state, roundtrip):
    """The HF state dict with every weight replaced by its GGUF (dequantized) value, layout undone."""
    import gguf
    n_layer = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCH[family]), n_layer)
    new = {}
    for name, t in state.items():
        g = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if g is None or g not in roundtrip:
            new[name] = t
            continue
        w = roundtrip[g].copy()
        if family in ("llama", "mistral") and name.endswith(("q_proj.weight", "k_proj.weight")):
            nh = cfg["num_attention_heads"]
            nkv = nh if name.endswith("q_proj.weight") else cfg["num_key_value_heads"]
            n = nkv
            w = w.reshape(n, w.shape[0] // n // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        if family == "gemma2" and name.endswith("norm.weight"):
            w = w - 1.0
        if family == "gpt2" and name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            w = np.ascontiguousarray(w.T)
        new[name] = torch.from_numpy(w)
    if cfg.get("tie_word_embeddings"):
        emb = "transformer.wte.weight" if family == "gpt2" else "model.embed_tokens.weight"
        new["lm_head.weight"] = new[emb]
    return new


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def verify(family, qtype, path, roundtrip, fixtures, prompts):
    """transformers-loaded GGUF vs the safetensors model (float64 both). Returns a result dict."""
    import gim_torch_ref as ref
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir = fixtures / "models" / family
    cfg = json.loads((model_dir / "config.json").read_text())
    res = {"file": path.name, "family": family, "type": qtype, "bytes": path.stat().st_size}
    st = load_hf(model_dir).double()
    exact = load_hf(model_dir)
    exact.load_state_dict(roundtrip_state(family, cfg, load_file(str(model_dir / "model.safetensors")),
                                          roundtrip), strict=True)
    exact = exact.double()
    for m in exact.modules():  # GGUF stores eps as a float32: use exactly that value
        for attr in ("variance_epsilon", "eps"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, float(np.float32(getattr(m, attr))))
    tok_st = AutoTokenizer.from_pretrained(str(model_dir))
    expected = [ref.forward_logits(exact, p["input_ids"])[-1] for p in prompts]
    res["_expected_logits"] = [e.tolist() for e in expected]
    res["rel_err_dequantized_vs_safetensors"] = max(
        rel(e, ref.forward_logits(st, p["input_ids"])[-1]) for e, p in zip(expected, prompts))

    with tempfile.TemporaryDirectory() as tmp:  # a folder holding only the GGUF (no config.json beside it)
        shutil.copy(path, Path(tmp) / path.name)
        try:
            tok_g = AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)
            texts = [p["text"] for p in prompts] + EXTRA_TOKENIZER_TEXTS
            same = [tok_g(t)["input_ids"] == tok_st(t)["input_ids"] for t in texts]
            res["tokenizer_ids_identical"] = f"{sum(same)}/{len(same)}"
            res["tokenizer_mismatches"] = [t for t, s in zip(texts, same) if not s]
        except Exception as e:  # noqa: BLE001
            res["tokenizer_error"] = f"{type(e).__name__}: {e}"

        attempts = [("plain", {})]
        overrides = {}
        if family == "gemma2":
            overrides = {k: cfg[k] for k in ("attn_logit_softcapping", "final_logit_softcapping",
                                              "query_pre_attn_scalar")}
        if family == "qwen3":
            overrides = {"head_dim": cfg["head_dim"]}
        if family == "gpt2":
            overrides = {"n_inner": cfg["n_inner"], "n_positions": cfg["n_positions"]}
        if overrides:
            attempts.append(("with_config_overrides", overrides))
        for label, kw in attempts:
            entry = {}
            try:
                g = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, attn_implementation="eager",
                                                         dtype=torch.float32, **kw).eval()
                entry["class"] = type(g).__name__
                g = g.double()
                worst_exact, worst_st, worst_f32 = 0.0, 0.0, 0.0
                for p, le in zip(prompts, expected):
                    lg = ref.forward_logits(g, p["input_ids"])[-1]
                    ls = ref.forward_logits(st, p["input_ids"])[-1]
                    worst_exact = max(worst_exact, rel(lg, le))
                    worst_st = max(worst_st, rel(lg, ls))
                entry["rel_err_vs_dequantized_safetensors"] = worst_exact
                entry["rel_err_vs_safetensors"] = worst_st
                # transformers' own float32 forward (its float32 norms/softmax), the honest f32 comparison
                g32 = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, attn_implementation="eager",
                                                           dtype=torch.float32, **kw).eval()
                s32 = load_hf(model_dir)
                with torch.no_grad():
                    for p in prompts:
                        ids = torch.tensor([p["input_ids"]])
                        a = g32(ids).logits[0, -1].double()
                        b = s32(ids).logits[0, -1].double()
                        worst_f32 = max(worst_f32, rel(a, b))
                entry["float32_rel_err_vs_safetensors"] = worst_f32
            except Exception as e:  # noqa: BLE001
                entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                print(f"{path.name} ({label}):\n{traceback.format_exc(limit=4)}", file=sys.stderr)
            res[label] = entry
            if kw:
                res[label]["overrides"] = kw
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=str(DEFAULT_FIXTURES))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    fixtures, out_dir = Path(args.fixtures), Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts_src = json.loads((fixtures / "llama.json").read_text())["cases"]
    prompts, seen = [], set()
    for c in prompts_src:
        if c["text"] not in seen:
            seen.add(c["text"])
            prompts.append({"text": c["text"], "input_ids": c["input_ids"]})

    import gguf
    import transformers
    results = []
    for family in args.families.split(","):
        for qtype in ["F32"] + (LLAMA_QUANTS if family == "llama" else []):
            path, roundtrip = convert(family, qtype, fixtures, out_dir)
            line = f"{path.name}: {path.stat().st_size / 1024:.0f} KiB"
            if not args.no_verify:
                r = verify(family, qtype, path, roundtrip, fixtures, prompts)
                results.append(r)
                line += f"; tokenizer ids identical {r.get('tokenizer_ids_identical', r.get('tokenizer_error'))}"
                for label in ("plain", "with_config_overrides"):
                    e = r.get(label)
                    if e is None:
                        continue
                    if "error" in e:
                        line += f"; {label}: ERROR {e['error']}"
                    else:
                        line += (f"; {label}: {e['class']} f64 rel err vs dequantized safetensors "
                                 f"{e['rel_err_vs_dequantized_safetensors']:.1e}, vs safetensors "
                                 f"{e['rel_err_vs_safetensors']:.1e}, f32 transformers vs safetensors "
                                 f"{e['float32_rel_err_vs_safetensors']:.1e}")
            print(line, flush=True)

    if not args.no_verify:
        expected = {
            "format_version": 1,
            "how": ("tools/fixtures_to_gguf.py; versions: transformers " + transformers.__version__ +
                    ", torch " + torch.__version__ + ", gguf " + getattr(gguf, "__version__", "0.19.0")),
            "prompts": prompts,
            "logits_note": ("expected_logits_last[i] = float64 last-position logits (full vocab) for prompts[i], "
                            "computed by tools/gim_torch_ref.py from the safetensors checkpoint with every weight "
                            "replaced by its GGUF value (gguf.quants quantize -> dequantize, llama.cpp layout "
                            "undone) and the norm eps rounded to float32 as the GGUF stores it. For F32 files "
                            "these are the shared fixtures' logits_last up to that eps rounding (~1e-11)."),
            "files": [],
        }
        for r in results:
            entry = {k: v for k, v in r.items() if k not in ("plain", "with_config_overrides")
                     and not k.startswith("_")}
            for label in ("plain", "with_config_overrides"):
                if label in r:
                    entry[f"transformers_{label}"] = {k: v for k, v in r[label].items() if not k.startswith("_")}
            entry["expected_logits_last"] = r["_expected_logits"]
            expected["files"].append(entry)
        (out_dir / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out_dir / 'expected.json'}")


if __name__ == "__main__":
    main()
