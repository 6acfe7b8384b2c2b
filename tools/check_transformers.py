#!/usr/bin/env python3
"""Load the embedded toy checkpoints with Hugging Face `transformers` and check them against gim.

Run with `make check-transformers` (it makes `.venv-torch` from requirements-torch.txt: PyTorch is a
multi-GB download, so this is not part of `make test`). For each toy model it checks that

  * `AutoModelForCausalLM` / `AutoTokenizer` load the folder as it is (no conversion);
  * the tokenizer gives the same ids as gim's;
  * the last-position logits of transformers (float64) and of `gim logits` (f32) agree to 1e-4 of
    their scale, prompt by prompt;
  * the task accuracy measured with transformers alone meets the trained models' bar (>= 95%).

Prints one line per model and exits non-zero on any mismatch.
"""
import json
import random
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
GIM = ROOT / "target" / "release" / "gim"
TOL = 1e-4


def gim_logits(model_dir, ids=None, prompt=None):
    """`gim logits --json` for token ids or a prompt: its token ids and last-position logits."""
    args = ["--ids", ",".join(map(str, ids))] if ids is not None else ["--prompt", prompt]
    out = subprocess.run([str(GIM), "logits", "--model", str(model_dir), *args, "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def rel_diff(ours, ref):
    """|Δ| / max|ref| between gim's logits (a list) and transformers' (a float64 tensor)."""
    ours = torch.tensor(ours, dtype=torch.float64)
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def last_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double()


def check_ioi(failures):
    d = ROOT / "models" / "toy-ioi"
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
    prompts = [json.loads(l) for l in (d / "ioi_prompts.jsonl").read_text().splitlines() if l.strip()]
    id_mismatch, correct, held, worst = 0, 0, 0, 0.0
    for p in prompts:
        ids = tok(p["clean"])["input_ids"]
        ours = gim_logits(d, prompt=p["clean"])
        if ids != ours["token_ids"]:
            id_mismatch += 1
            continue
        ref = last_logits(model, ids)[-1]
        worst = max(worst, rel_diff(ours["logits"], ref))
        if p["heldout_template"]:
            held += 1
            correct += ref.argmax().item() == tok(p["io"], add_special_tokens=False)["input_ids"][0]
    acc = correct / max(held, 1)
    print(f"toy-ioi: {type(model).__name__} loaded by transformers {__import__('transformers').__version__}; "
          f"token ids identical on {len(prompts) - id_mismatch}/{len(prompts)} prompts; "
          f"logits worst |Δ|/max = {worst:.2e} over those prompts; "
          f"held-out-template accuracy (transformers) = {acc:.3f} on {held} prompts")
    if id_mismatch:
        failures.append(f"toy-ioi: {id_mismatch} prompts tokenize differently")
    if worst > TOL:
        failures.append(f"toy-ioi: logits differ by {worst:.2e}")
    if acc < 0.95:
        failures.append(f"toy-ioi: accuracy {acc:.3f} < 0.95")


def check_induction(failures):
    d = ROOT / "models" / "toy-induction"
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
    cons, vows = "bdfgklmnprst", "aeio"
    syms = [tok.convert_tokens_to_ids(c + v) for c in cons for v in vows]
    bos = model.config.bos_token_id
    rng = random.Random(0)
    correct, total, worst = 0, 0, 0.0
    for n in range(200):  # the training layout: <bos> noise A noise A noise, 32 tokens
        seg = [rng.choice(syms) for _ in range(rng.randint(4, 12))]
        row = [bos] + [rng.choice(syms) for _ in range(rng.randint(0, 4))] + seg
        row += [rng.choice(syms) for _ in range(rng.randint(0, 4))]
        second = len(row)
        row += seg
        row += [rng.choice(syms) for _ in range(max(0, 32 - len(row)))]
        row = row[:32]
        logits = last_logits(model, row)
        pred = logits.argmax(-1).tolist()
        for p in range(second, min(second + len(seg) - 1, len(row) - 1)):
            correct += pred[p] == row[p + 1]
            total += 1
        if n < 20:
            worst = max(worst, rel_diff(gim_logits(d, ids=row)["logits"], logits[-1]))
    acc = correct / total
    print(f"toy-induction: {type(model).__name__} loaded by transformers; logits worst |Δ|/max = "
          f"{worst:.2e} over 20 sequences; repeated-half accuracy (transformers) = {acc:.3f} "
          f"on {total} predictions")
    if worst > TOL:
        failures.append(f"toy-induction: logits differ by {worst:.2e}")
    if acc < 0.95:
        failures.append(f"toy-induction: accuracy {acc:.3f} < 0.95")


def main():
    if not GIM.exists():
        sys.exit(f"{GIM} is missing: run `make build` first")
    torch.set_num_threads(2)
    failures = []
    check_ioi(failures)
    check_induction(failures)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
