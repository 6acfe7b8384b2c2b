"""Greedy continuations of SmolLM2-135M-Instruct (the pinned GGUF) by transformers, in float64,
with the smallest top-1 margin of each run, for gim's generation test.

Usage: .venv-torch/bin/python tools/make_smollm2_generations.py GGUF_FILE OUT.json"""
import json
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

CASES = [
    ("plain", "The capital of France is", False, 24),
    ("story", "Once upon a time, in a small village,", False, 24),
    ("chat", "What is the capital of France?", True, 24),
]


def main(gguf, out):
    path = pathlib.Path(gguf)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, attn_implementation="eager")
    model = model.double().eval()
    eos = tok.eos_token_id
    rows = []
    for name, text, chat, n in CASES:
        prompt = (tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                          add_generation_prompt=True) if chat else text)
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
        seq, margins = list(ids), []
        with torch.no_grad():
            for _ in range(n):
                logits = model(torch.tensor([seq])).logits[0, -1]
                top = torch.topk(logits, 2)
                margins.append(float(top.values[0] - top.values[1]))
                nxt = int(top.indices[0])
                seq.append(nxt)
                if nxt == eos:
                    break
        gen = seq[len(ids):]
        rows.append({"name": name, "text": text, "chat": chat, "prompt": prompt, "prompt_ids": ids,
                     "max_tokens": n, "ids": gen, "decoded": tok.decode([g for g in gen if g != eos]),
                     "min_margin": min(margins)})
        print(name, repr(rows[-1]["decoded"]), "min margin", round(min(margins), 4))
    meta = {"how": "transformers GGUF loader, float64 eager, greedy argmax; eos id %d ends a run" % eos,
            "torch": torch.__version__, "transformers": __import__("transformers").__version__}
    pathlib.Path(out).write_text(json.dumps({"reference": meta, "cases": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
