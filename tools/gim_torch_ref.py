#!/usr/bin/env python3
"""Independent PyTorch float64 reference for GIM token attributions (Edin et al. 2025).

The four GIM backward rules of ../shared/GIM.md are patched into a Hugging Face `transformers`
causal LM (forward values unchanged, only the backward differs):

  * norm freezing: every RMSNorm / LayerNorm (the final norm, Gemma's (1+w) RMSNorm, Qwen3's
    q_norm/k_norm, Gemma2's post-norms) computes its statistic (rms or std, eps included) and
    `detach()`es it, so it is a constant in the backward. LayerNorm's mean subtraction stays
    differentiable.
  * softmax temperature T: the attention softmax is a custom autograd Function whose backward is
    grad_x = s_T * (g - sum(g * s_T, keys)), s_T = softmax(x / T), x = the softmax input after the
    scaling, the soft-cap (Gemma2) and the additive mask (masked entries included; transformers uses
    the dtype's minimum, not -inf). No extra 1/T factor.
  * Q/K/V scaling: identity forward, gradient multiplied by q/k/v scale, applied to the query, key
    and value handed to the attention function (after RoPE and qk-norm, before GQA repeat).
  * gate/up scaling: identity forward, gradient through the gate-projection output and the
    up-projection output multiplied by its scale (Phi-3's fused gate_up_proj chunked (gate, up)).

Everything runs in float64: the model is loaded with attn_implementation="eager" and `.double()`ed;
the patched RMSNorm and softmax compute in float64 (transformers itself would upcast them to
float32 only). RoPE cos/sin tables are left as transformers builds them (float32 math, cast to the
model dtype), which is what the shared fixtures did.

Patching: module forwards of the norms and MLPs are replaced per instance; the attention kernel is
replaced by overwriting `eager_attention_forward` in each loaded modeling module (the attention
classes look it up as a module global at call time). `GimPatch` is a context manager that restores
everything on exit.

Fast float32 mode (`GimPatch(model, rules, fast=True)`, what tools/torch_bench.py times): the same
four rules in the model's own dtype, norms and softmax computed in float32 as transformers itself
does, each rule one custom autograd Function: a frozen RMSNorm / LayerNorm whose backward is
g * w * inv_rms (LayerNorm: that, minus its mean over features), a softmax that keeps s_T from the
forward and runs one fused softmax backward on it, the same identity-with-scaled-gradient for Q/K/V
and gate/up. Norms with freezing off keep transformers' own forward. `validate --fast` checks it on
every fixture family against the float64 fixtures (float32 rounding: ~1e-6..1e-4).

Attribution: attribution_i = sum_d d target / d inputs_embeds[i, d] * (E(x)[i, d] - E(b)[i, d]),
E = model.get_input_embeddings() (token embedding only), b = the baseline token repeated,
target = logit[p, t] or logit[p, t] - logit[p, foil].

CLI:
  gim_torch_ref.py validate [--fixtures DIR] [--arch llama,mistral,...]  (default: all 8 families)
      reproduce the shared fixtures (every case, every rule set) and print the worst relative error
      (--fast: the float32 fast patch instead, with a float32 tolerance)
  gim_torch_ref.py attribute --model DIR [--gguf-file NAME] --prompt TEXT [--rules gim] [--target ID]
      [--foil ID] [--position P] [--baseline ID]
"""
import argparse
import contextlib
import importlib
import json
import math
import sys
from pathlib import Path

import torch

GIM_DEFAULTS = {"freeze_norm": True, "softmax_temperature": 2.0, "q_scale": 0.25, "k_scale": 0.25,
                "v_scale": 0.5, "gate_scale": 0.5, "up_scale": 0.5}
_OFF = {"freeze_norm": False, "softmax_temperature": None, "q_scale": None, "k_scale": None,
        "v_scale": None, "gate_scale": None, "up_scale": None}
RULE_SETS = {
    "plain": dict(_OFF),
    "gim": dict(GIM_DEFAULTS),
    "freeze_norm_only": {**_OFF, "freeze_norm": True},
    "softmax_T_only": {**_OFF, "softmax_temperature": 2.0},
    "qkv_only": {**_OFF, "q_scale": 0.25, "k_scale": 0.25, "v_scale": 0.5},
    "gate_up_only": {**_OFF, "gate_scale": 0.5, "up_scale": 0.5},
}


# ----------------------------------------------------------------------------- autograd pieces
class _ScaleGrad(torch.autograd.Function):
    """Identity forward; gradient multiplied by `scale` in the backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


def scale_grad(x, scale):
    if scale is None or scale == 1.0:
        return x
    return _ScaleGrad.apply(x, float(scale))


class _TempSoftmax(torch.autograd.Function):
    """softmax(x) forward (float64); backward s_T * (g - sum(g * s_T)), s_T = softmax(x / T)."""

    @staticmethod
    def forward(ctx, x, temperature):
        ctx.save_for_backward(x)
        ctx.t = temperature
        return torch.softmax(x, dim=-1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s_t = torch.softmax(x / ctx.t, dim=-1)
        return s_t * (g - (g * s_t).sum(-1, keepdim=True)), None


def gim_softmax(x, temperature):
    if temperature is None:
        return torch.softmax(x, dim=-1)  # ordinary gradient
    return _TempSoftmax.apply(x, float(temperature))


class _TempSoftmaxFast(torch.autograd.Function):
    """The same rule as _TempSoftmax in the input's dtype, cheaper: s_T = softmax(x / T) is computed
    in the forward and saved (not x), and the backward is aten's fused softmax backward on it,
    which computes exactly s_T * (g - sum(g * s_T))."""

    @staticmethod
    def forward(ctx, x, temperature):
        s_t = torch.softmax(x / temperature, dim=-1)
        ctx.save_for_backward(s_t)
        return torch.softmax(x, dim=-1)

    @staticmethod
    def backward(ctx, g):
        (s_t,) = ctx.saved_tensors
        return torch._softmax_backward_data(g.contiguous(), s_t, -1, s_t.dtype), None


def gim_softmax_fast(x, temperature):
    if temperature is None:
        return torch.softmax(x, dim=-1)
    return _TempSoftmaxFast.apply(x, float(temperature))


def _sum_to_last(t):
    return t.reshape(-1, t.shape[-1]).sum(0)


class _FrozenRMSNorm(torch.autograd.Function):
    """w * x * inv_rms (Gemma: (1 + w) * ...), inv_rms = rsqrt(mean(x^2) + eps) held constant in the
    backward: grad_x = g * w * inv_rms. A weight gradient only when the weight requires one."""

    @staticmethod
    def forward(ctx, x, weight, eps, gemma_style):
        inv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        w = (1.0 + weight) if gemma_style else weight
        h = x * inv
        ctx.save_for_backward(inv, w, h if ctx.needs_input_grad[1] else None)
        return h * w

    @staticmethod
    def backward(ctx, g):
        inv, w, h = ctx.saved_tensors
        gw = _sum_to_last(g * h) if ctx.needs_input_grad[1] else None
        return g * (w * inv), gw, None, None


class _FrozenLayerNorm(torch.autograd.Function):
    """((x - mean) * inv_std) * w + b with inv_std constant in the backward; the mean subtraction
    stays differentiable: grad_x = gh - mean(gh), gh = g * w * inv_std."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        xc = x - x.mean(-1, keepdim=True)
        inv = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
        h = xc * inv
        need_w = weight is not None and ctx.needs_input_grad[1]
        ctx.save_for_backward(inv, weight, h if need_w else None)
        ctx.has_bias = bias is not None
        out = h * weight if weight is not None else h
        return out + bias if bias is not None else out

    @staticmethod
    def backward(ctx, g):
        inv, w, h = ctx.saved_tensors
        gh = (g * w if w is not None else g) * inv
        gx = gh - gh.mean(-1, keepdim=True)
        gw = _sum_to_last(g * h) if h is not None else None
        gb = _sum_to_last(g) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def _rmsnorm_forward_fast(module, gemma_style):
    eps = getattr(module, "variance_epsilon", None)
    if eps is None:
        eps = getattr(module, "eps")

    def forward(hidden_states):
        out = _FrozenRMSNorm.apply(hidden_states.to(torch.float32), module.weight.to(torch.float32),
                                   float(eps), gemma_style)
        return out.to(hidden_states.dtype)

    return forward


def _layernorm_forward_fast(module):
    def forward(hidden_states):
        return _FrozenLayerNorm.apply(hidden_states, module.weight, module.bias, float(module.eps))

    return forward


# ----------------------------------------------------------------------------- patched forwards
def _repeat_kv(x, n_rep):
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def _make_attention(rules, counter, softmax=gim_softmax):
    """A drop-in for transformers' `eager_attention_forward` (llama, mistral, qwen2/3, gemma, gemma2,
    phi3, gpt2 all call it as fn(module, query, key, value, attention_mask, scaling=..., dropout=...,
    [softcap=...], **kwargs) with query/key/value as [batch, heads, seq, head_dim], RoPE applied)."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None,
                  **kwargs):
        counter[0] += 1
        query = scale_grad(query, rules["q_scale"])
        key = scale_grad(key, rules["k_scale"])
        value = scale_grad(value, rules["v_scale"])
        n_rep = query.shape[1] // key.shape[1]
        key = _repeat_kv(key, n_rep)
        value = _repeat_kv(value, n_rep)
        if scaling is None:
            scaling = query.shape[-1] ** -0.5
        x = torch.matmul(query, key.transpose(2, 3)) * scaling
        if softcap is None:
            softcap = kwargs.get("attn_logit_softcapping") or getattr(module, "attn_logit_softcapping", None)
        if softcap is not None:
            x = torch.tanh(x / softcap) * softcap
        if attention_mask is not None:
            mask = attention_mask[:, :, :, : key.shape[-2]]
            if mask.dtype == torch.bool:  # a boolean mask (True = keep): transformers' eager value
                mask = torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device),
                                   torch.tensor(torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device))
            x = x + mask.to(x.dtype)
        w = softmax(x, rules["softmax_temperature"]).to(query.dtype)
        out = torch.matmul(w, value).transpose(1, 2).contiguous()
        return out, w

    return attention


def _rmsnorm_forward(module, freeze, gemma_style):
    eps = getattr(module, "variance_epsilon", None)
    if eps is None:
        eps = getattr(module, "eps")

    def forward(hidden_states):
        x = hidden_states.to(torch.float64)
        inv_rms = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        if freeze:
            inv_rms = inv_rms.detach()
        h = x * inv_rms
        w = module.weight.to(torch.float64)
        out = h * (1.0 + w) if gemma_style else w * h
        return out.to(hidden_states.dtype)

    return forward


def _layernorm_forward(module, freeze):
    def forward(hidden_states):
        x = hidden_states.to(torch.float64)
        xc = x - x.mean(-1, keepdim=True)  # mean subtraction stays differentiable
        inv_std = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + module.eps)
        if freeze:
            inv_std = inv_std.detach()
        h = xc * inv_std
        if module.weight is not None:
            h = h * module.weight.to(torch.float64)
        if module.bias is not None:
            h = h + module.bias.to(torch.float64)
        return h.to(hidden_states.dtype)

    return forward


def _gated_mlp_forward(module, rules):
    act = getattr(module, "act_fn", None) or getattr(module, "activation_fn")
    if hasattr(module, "gate_up_proj"):  # Phi-3: fused, chunked in (gate, up) order
        def forward(x):
            gate, up = module.gate_up_proj(x).chunk(2, dim=-1)
            gate = scale_grad(gate, rules["gate_scale"])
            up = scale_grad(up, rules["up_scale"])
            return module.down_proj(up * act(gate))
    else:
        def forward(x):
            gate = scale_grad(module.gate_proj(x), rules["gate_scale"])
            up = scale_grad(module.up_proj(x), rules["up_scale"])
            return module.down_proj(act(gate) * up)
    return forward


class GimPatch(contextlib.AbstractContextManager):
    """Patch a transformers model with the GIM rules `rules` (a dict like RULE_SETS["gim"]).
    With every rule off the patched model computes the ordinary gradient (still in float64).
    fast=True: the float32 fast mode of the module docstring (same rules, the model's dtype)."""

    def __init__(self, model, rules, fast=False):
        self.model, self.rules, self.fast = model, {**_OFF, **rules}, fast
        self._undo = []
        self.attention_calls = [0]  # how often the patched attention ran (checked by `attribute`)
        self.patched = {"norm": 0, "mlp": 0, "attention_modules": 0}

    def __enter__(self):
        rules = self.rules
        attn = _make_attention(rules, self.attention_calls,
                               softmax=gim_softmax_fast if self.fast else gim_softmax)
        mods = {type(m).__module__ for m in self.model.modules()}
        for name in mods:
            mod = sys.modules.get(name) or importlib.import_module(name)
            if hasattr(mod, "eager_attention_forward"):
                self._undo.append((mod, "eager_attention_forward", mod.eager_attention_forward))
                mod.eager_attention_forward = attn
                self.patched["attention_modules"] += 1
        for m in self.model.modules():
            cls = type(m).__name__
            is_norm = cls.endswith("RMSNorm") or isinstance(m, torch.nn.LayerNorm)
            if self.fast and is_norm:
                self.patched["norm"] += 1
                if not rules["freeze_norm"]:
                    continue  # transformers' own forward: the ordinary gradient
                if cls.endswith("RMSNorm"):
                    new = _rmsnorm_forward_fast(m, gemma_style=cls.startswith("Gemma"))
                else:
                    new = _layernorm_forward_fast(m)
            elif cls.endswith("RMSNorm"):
                new = _rmsnorm_forward(m, rules["freeze_norm"], gemma_style=cls.startswith("Gemma"))
                self.patched["norm"] += 1
            elif isinstance(m, torch.nn.LayerNorm):
                new = _layernorm_forward(m, rules["freeze_norm"])
                self.patched["norm"] += 1
            elif cls.endswith("MLP") and (hasattr(m, "gate_up_proj") or
                                          (hasattr(m, "gate_proj") and hasattr(m, "up_proj"))):
                new = _gated_mlp_forward(m, rules)
                self.patched["mlp"] += 1
            else:
                continue
            self._undo.append((m, "forward", m.__dict__.get("forward")))
            m.forward = new
        return self

    def __exit__(self, *exc):
        for obj, attr, old in reversed(self._undo):
            if old is None and attr == "forward":
                del obj.forward
            else:
                setattr(obj, attr, old)
        self._undo.clear()
        return False


# ----------------------------------------------------------------------------- model + attribution
def load_model(model_dir, gguf_file=None):
    """float64, eager attention, eval mode."""
    from transformers import AutoModelForCausalLM
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager",
                                                 dtype=torch.float32, **kw)
    return model.double().eval()


def attribute(model, input_ids, baseline_token_id, rules, target_token_id=None, target_position=-1,
              foil_token_id=None, fast=False):
    """GIM (or any rule set) token attributions. Returns a dict with attributions (list of n floats),
    the target token, the target value (logit or logit difference) and the target-position logits.
    fast=True: the float32 fast patch on a model in its own dtype (embeddings kept in that dtype)."""
    ids = torch.tensor([list(input_ids)])
    emb = model.get_input_embeddings()
    dtype = emb.weight.dtype if fast else torch.float64
    with torch.no_grad():
        e_x = emb(ids).to(dtype)
        e_b = emb(torch.full_like(ids, baseline_token_id)).to(dtype)
    x = e_x.clone().requires_grad_(True)
    with GimPatch(model, rules, fast=fast) as patch:
        logits = model(inputs_embeds=x, use_cache=False).logits[0, target_position]
        n_layers = model.config.num_hidden_layers
        # guard against a transformers version that bypasses the patch (e.g. not eager attention,
        # a norm class not called *RMSNorm): the rules would then silently not apply
        if patch.attention_calls[0] != n_layers or patch.patched["norm"] < 2 * n_layers + 1:
            raise RuntimeError(f"GIM patch did not take: {patch.attention_calls[0]} attention calls for "
                               f"{n_layers} layers, {patch.patched}")
        if target_token_id is None:
            target_token_id = int(logits.argmax())
        target = logits[target_token_id]
        if foil_token_id is not None:
            target = target - logits[foil_token_id]
        (grad,) = torch.autograd.grad(target, x)
    attr = (grad * (e_x - e_b)).sum(-1)[0]
    return {"attributions": attr.tolist(), "target_token_id": target_token_id,
            "target_value": target.item(), "logits": logits.detach()}


def forward_logits(model, input_ids):
    """All-position logits in float64 with the patched float64 norms/softmax (rules off)."""
    with torch.no_grad(), GimPatch(model, RULE_SETS["plain"]):
        return model(torch.tensor([list(input_ids)]), use_cache=False).logits[0].double()


# ----------------------------------------------------------------------------- validation
def validate(fixtures_dir, archs, fast=False):
    """Reproduce every case and rule set of the shared fixtures; returns {arch: {rule: worst}}.
    fast=True: with the float32 fast patch on the float32 model."""
    fixtures_dir = Path(fixtures_dir)
    result = {}
    for arch in archs:
        fx = json.loads((fixtures_dir / f"{arch}.json").read_text())
        model = load_model(fixtures_dir / fx["model_dir"])
        if fast:
            model = model.float()
        worst = {r: 0.0 for r in fx["rule_sets"]}
        worst["logits"] = 0.0
        for case in fx["cases"]:
            tp = case["target_position"]
            ref_logits = torch.tensor(case["logits_last"], dtype=torch.float64)
            for rname, rules in fx["rule_sets"].items():
                out = attribute(model, case["input_ids"], case["baseline_token_id"], rules,
                                target_token_id=case["target_token_id"], target_position=tp, fast=fast)
                ref = torch.tensor(case["attributions"][rname], dtype=torch.float64)
                ours = torch.tensor(out["attributions"], dtype=torch.float64)
                err = ((ours - ref).abs().max() / ref.abs().max()).item()
                worst[rname] = max(worst[rname], err)
                lerr = ((out["logits"].double() - ref_logits).abs().max() / ref_logits.abs().max()).item()
                worst["logits"] = max(worst["logits"], lerr)
            if case["target_kind"] == "argmax":
                assert int(ref_logits.argmax()) == case["target_token_id"]
        result[arch] = worst
        print(f"{arch}: {len(fx['cases'])} cases; worst max|Δ|/max|ref| " +
              ", ".join(f"{k}={v:.2e}" for k, v in worst.items()), flush=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--fixtures", default=str(Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    v.add_argument("--arch", default="llama,mistral,qwen2,qwen3,gemma,gemma2,phi3,gpt2")
    v.add_argument("--tol", type=float, help="worst relative error allowed (default 1e-9; --fast: 1e-3)")
    v.add_argument("--fast", action="store_true", help="the float32 fast patch (what torch_bench times)")
    a = sub.add_parser("attribute")
    a.add_argument("--model", required=True)
    a.add_argument("--gguf-file")
    a.add_argument("--prompt", required=True)
    a.add_argument("--rules", default="gim", choices=sorted(RULE_SETS))
    a.add_argument("--target", type=int)
    a.add_argument("--foil", type=int)
    a.add_argument("--position", type=int, default=-1)
    a.add_argument("--baseline", type=int)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cmd == "validate":
        res = validate(args.fixtures, args.arch.split(","), fast=args.fast)
        tol = args.tol if args.tol is not None else (1e-3 if args.fast else 1e-9)
        bad = [(a, r, e) for a, w in res.items() for r, e in w.items() if r != "logits" and e > tol]
        for a_, r, e in bad:
            print(f"FAIL {a_} {r}: {e:.2e} > {tol:.0e}")
        sys.exit(1 if bad else 0)
    from transformers import AutoTokenizer
    kw = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(args.model, **kw)
    model = load_model(args.model, args.gguf_file)
    ids = tok(args.prompt)["input_ids"]
    base = args.baseline if args.baseline is not None else tok(" ", add_special_tokens=False)["input_ids"][0]
    out = attribute(model, ids, base, RULE_SETS[args.rules], args.target, args.position, args.foil)
    print(json.dumps({"input_ids": ids, "tokens": tok.convert_ids_to_tokens(ids), "baseline_token_id": base,
                      "rules": args.rules, "target_token_id": out["target_token_id"],
                      "target_value": out["target_value"], "attributions": out["attributions"]}))


if __name__ == "__main__":
    main()
