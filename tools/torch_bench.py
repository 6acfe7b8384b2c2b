#!/usr/bin/env python3
"""The PyTorch anchor, measured on this machine beside `gim bench` (see `make bench-torch`).

Random-weight transformers models shaped like `gim bench`'s (GPT-2 small, Llama-3.2-1B), f32, 2 threads.
Times a forward pass with the logits at the last position only (what attribution needs) and a plain
gradient of the top logit with respect to the input embeddings (no weight gradients). CANDLE.md
measured GIM's four rules at +3% over this gradient in PyTorch. With `--ig`, also integrated
gradients of 32 steps batched 16 at a time (what `gim` does), to show PyTorch's own integrated-
gradients ÷ gradient ratio on this machine. Prints a markdown table (median ms).

With `--model PATH.gguf|FOLDER` (see `make bench-real`): the real checkpoint instead, loaded once
(f32, eager attention, no weight gradients) and timed hot on the same prompt as `gim bench --model`
(BENCH_PARAGRAPH below, a copy of src/bench.rs's; the model's tokenizer, special tokens added):
the forward (last-position logits), the plain gradient of the top logit w.r.t. inputs_embeds, and
GIM (all four rules, float32, gim_torch_ref.py's fast patch: custom autograd Functions). Rows in
`gim bench`'s table format, then the process's peak RSS (taken before the check). The GIM
attributions of the timed code are then checked once against gim_torch_ref.py's float64 reference
on a float64 copy of the model (worst |Δ| / max |ref|; exit 1 above --check-tol, 1e-4; --no-check
skips), printed beside how far the plain gradient is from GIM (what a rule that did not take would show).
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gim_torch_ref  # noqa: E402

# verbatim copy of src/bench.rs's BENCH_PARAGRAPH (the prompt `gim bench --model` times)
BENCH_PARAGRAPH = "When the tower opened in the spring of 1889, many artists in the city signed letters against it, calling it a useless and monstrous iron skeleton that would spoil the view of the old streets. The engineers answered that the structure was a triumph of modern science, and the crowds who climbed its stairs during the World's Fair seemed to agree with them. The tower was designed by the engineering company of Gustave Eiffel, and for forty-one years it was the tallest structure in the world."

SHAPES = {
    "gpt2-small": lambda: GPT2Config(n_embd=768, n_head=12, n_layer=12, n_positions=1024,
                                     vocab_size=50257, activation_function="gelu_new"),
    "llama-1b": lambda: LlamaConfig(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                                    num_hidden_layers=16, intermediate_size=8192, vocab_size=128256,
                                    max_position_embeddings=131072, rms_norm_eps=1e-5,
                                    tie_word_embeddings=True, rope_theta=500000.0),
}


def median_ms(f, reps):
    f()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def rss_mb(field="VmHWM"):
    """This process's peak resident set size so far (VmHWM, as `gim bench` reports it), or with
    field="VmRSS" its current one, in MB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb():
    return rss_mb("VmHWM")


def load_real(spec):
    """(model, tokenizer, name) for a .gguf file or a checkpoint folder: f32, eager, no weight grads."""
    from transformers import AutoTokenizer
    path = Path(spec)
    if path.suffix == ".gguf":
        where, kw = str(path.parent), {"gguf_file": path.name}
    else:
        where, kw = str(path), {}
    tok = AutoTokenizer.from_pretrained(where, **kw)
    model = AutoModelForCausalLM.from_pretrained(where, attn_implementation="eager", dtype=torch.float32, **kw)
    model = model.eval()  # already float32 (dtype=); a GGUF model refuses .float() (it counts as quantized)
    assert model.dtype == torch.float32, model.dtype
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok, path.stem if path.suffix == ".gguf" else path.name


def bench_real(a):
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # the weight-loading bar (the GGUF one is plain tqdm: TQDM_DISABLE=1)
    t0 = time.perf_counter()
    model, tok, name = load_real(a.model)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    print(f"{a.model}: {n_params / 1e6:.1f}M parameters, loaded in {load_s:.2f} s, peak RSS {peak_rss_mb():.0f} MB",
          file=sys.stderr, flush=True)
    text = a.prompt if a.prompt is not None else BENCH_PARAGRAPH
    ids = torch.tensor([tok(text, add_special_tokens=True)["input_ids"]])
    n = ids.shape[1]
    baseline = 0  # as `gim bench`: baseline token id 0
    emb = model.get_input_embeddings()
    with torch.no_grad():
        e_x = emb(ids)
        e_b = emb(torch.full_like(ids, baseline))
    # the whole CausalLM with logits_to_keep=1: the head on the last position only, and whatever the
    # model does after it (Gemma2's final logit soft-cap), as gim and the reference do

    def forward():
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1]

    def attribution():
        """The top logit's gradient w.r.t. inputs_embeds, times (E(x) - E(baseline)), summed."""
        x = e_x.clone().requires_grad_(True)
        logits = model(inputs_embeds=x, use_cache=False, logits_to_keep=1).logits[0, -1]
        target = int(logits.argmax())
        (g,) = torch.autograd.grad(logits[target], x)
        return (g * (e_x - e_b)).sum(-1)[0], target

    reps = a.reps
    rows = [("forward", median_ms(forward, reps))]
    rows.append(("gradient", median_ms(attribution, reps)))
    with gim_torch_ref.GimPatch(model, gim_torch_ref.RULE_SETS["gim"], fast=True) as patch:
        rows.append(("gim", median_ms(attribution, reps)))
        calls = patch.attention_calls[0]
        gim_attr, target = attribution()
    layers = model.config.num_hidden_layers
    if calls != (reps + 1) * layers:  # the patch must really have run in every layer of every rep
        sys.exit(f"GIM patch did not take: {calls} attention calls for {reps + 1} runs of {layers} layers")
    rss = peak_rss_mb()
    fwd = rows[0][1]
    print("| shape | tokens | method | median ms | × forward | tokens/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for method, ms in rows:
        print(f"| torch {name} | {n} | {method} | {ms:.1f} | {ms / fwd:.2f} | {n / (ms / 1e3):.0f} | {rss:.0f} |")
    print(f"torch peak RSS {rss:.0f} MB (now {rss_mb('VmRSS'):.0f} MB); threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}", flush=True)
    if a.no_check:
        return
    # once: the timed GIM code against the float64 reference (gim_torch_ref.load_model's model is
    # from_pretrained(f32).double(); a float64 copy of this one is the same and skips a reload)
    t0 = time.perf_counter()
    model64 = copy.deepcopy(model).double()
    ref = gim_torch_ref.attribute(model64, ids[0].tolist(), baseline, gim_torch_ref.RULE_SETS["gim"],
                                  target_token_id=target)
    ref = torch.tensor(ref["attributions"], dtype=torch.float64)
    err = ((gim_attr.double() - ref).abs().max() / ref.abs().max()).item()
    # how far the plain gradient is from GIM on the same scale: what a rule that did not apply would cost
    plain = gim_torch_ref.attribute(model64, ids[0].tolist(), baseline, gim_torch_ref.RULE_SETS["plain"],
                                    target_token_id=target)
    apart = ((torch.tensor(plain["attributions"], dtype=torch.float64) - ref).abs().max() / ref.abs().max()).item()
    ok = err <= a.check_tol
    print(f"check: torch f32 GIM vs gim_torch_ref float64 (target {target}, baseline {baseline}): "
          f"max|Δ|/max|ref| = {err:.2e} ({'ok' if ok else 'FAIL'}, tol {a.check_tol:.0e}; plain gradient vs "
          f"GIM {apart:.2f}; {time.perf_counter() - t0:.1f} s)", flush=True)
    if not ok:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a real checkpoint: a .gguf file or a transformers folder")
    ap.add_argument("--prompt", help="with --model: the text to time (default: gim bench's paragraph)")
    ap.add_argument("--no-check", action="store_true", help="with --model: skip the float64 check")
    ap.add_argument("--check-tol", type=float, default=1e-4)
    ap.add_argument("--shape", default="gpt2-small")
    ap.add_argument("--tokens", default="32,128")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ig", action="store_true", help="also time integrated gradients (32 steps)")
    ap.add_argument("--ig-steps", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if a.model:
        return bench_real(a)
    print("| shape | tokens | method | median ms | × forward |")
    print("|---|---|---|---|---|")
    for shape in a.shape.split(","):
        cfg = SHAPES[shape]()
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg).float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        body, head = model.base_model, model.lm_head
        emb = model.get_input_embeddings()
        for n in map(int, a.tokens.split(",")):
            ids = torch.randint(0, cfg.vocab_size, (1, n))

            def forward():
                with torch.no_grad():
                    h = body(input_ids=ids).last_hidden_state[:, -1]
                    return head(h)

            def gradient():
                x = emb(ids).detach().requires_grad_(True)
                h = body(inputs_embeds=x).last_hidden_state[:, -1]
                logits = head(h)
                logits[0, logits[0].argmax()].backward()
                return x.grad

            def integrated_gradients():
                x = emb(ids).detach()
                base = torch.zeros_like(x)
                with torch.no_grad():
                    t = head(body(inputs_embeds=x).last_hidden_state[:, -1])[0].argmax()
                total = torch.zeros_like(x)
                steps = a.ig_steps
                for k0 in range(0, steps, 16):
                    al = (torch.arange(k0, min(k0 + 16, steps)) + 0.5) / steps
                    xs = (base + al[:, None, None] * (x - base)).requires_grad_(True)
                    h = body(inputs_embeds=xs).last_hidden_state[:, -1]
                    head(h)[:, t].sum().backward()
                    total += xs.grad.sum(0, keepdim=True)
                return (total / steps * (x - base)).sum(-1)

            f = median_ms(forward, a.reps)
            g = median_ms(gradient, a.reps)
            print(f"| {shape} | {n} | torch forward | {f:.1f} | 1.00 |")
            print(f"| {shape} | {n} | torch gradient | {g:.1f} | {g / f:.2f} |", flush=True)
            if a.ig:
                ig = median_ms(integrated_gradients, max(1, a.reps // 2))
                print(f"| {shape} | {n} | torch integrated gradients ({a.ig_steps} steps) | {ig:.1f} "
                      f"| {ig / f:.2f} (÷ gradient {ig / g:.1f}) |", flush=True)


if __name__ == "__main__":
    main()
