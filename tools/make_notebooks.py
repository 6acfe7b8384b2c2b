"""Writes the example notebooks (source of truth for their cells). Run: python3 tools/make_notebooks.py"""
import json, pathlib

IOI = "When Mary and John went to the store , John gave a drink to"
IOI_ABC = "When Mary and John went to the store , Kate gave a drink to"
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
       "(gradients that account for self-repair in attention softmax and norms). This notebook uses the "
       "embedded `toy-ioi` model, a small llama-architecture model trained by `gim train ioi` on the "
       "indirect-object task."),
    code("%gim load toy-ioi"),
    md("How the tokenizer splits the prompt, and what the model predicts next:"),
    code(f'%gim tokens "{IOI}"', draws=True),
    code(f'%gim top "{IOI}" -k 5', draws=True),
    md("## Attribution\nWhich tokens make the model say ` Mary` rather than ` John`? "
       "(contrastive target: the logit difference)"),
    code(f'%gim attribute "{IOI}" --target " Mary" --contrast " John" --as first', draws=True),
    md("## Methods side by side\nGIM next to plain gradient×(input−baseline), gradient×input, "
       "integrated gradients and occlusion, on one colour scale."),
    code(f'%gim compare "{IOI}" --target " Mary" --contrast " John" '
         "--methods gim,gradient,grad-x-input,integrated-gradients,occlusion", draws=True),
    md("## Settings\nThe GIM rules are session settings (`%gim config key=value`); `%gim help` lists every magic."),
    code("%gim config"),
    code("%gim help"),
    md("## Plain Rust\nEvery cell that is not a magic is Rust, evaluated with evcxr; state persists."),
    code("let answer = 6 * 7;\nprintln!(\"the answer is {answer}\");"),
]),
"02-circuit-hunting.ipynb": nb([
    md("# Circuit hunting on the IOI toy\n\nClean prompt: *\"" + IOI + "\"* → ` Mary`. Corrupted (ABC) prompt: the second "
       "mention of the subject is replaced by a third name, so the model has no reason to prefer ` Mary`. "
       "The metric is `logit(Mary) − logit(John)`."),
    code("%gim load toy-ioi"),
    md("## Node scores\nGIM attribution patching for every head and MLP, next to the exact effect of really patching each node "
       "(`--exact`)."),
    code(f'%gim heads --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --exact', draws=True),
    md("## Edges\nEvery sender → receiver edge (receivers: each head's q, k, v input, each MLP input, the logits), "
       "scored from one backward pass."),
    code(f'%gim edges --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --top 20', draws=True),
    md("## The circuit and its faithfulness\nKeep the top edges, patch every other edge to its corrupted value, and really run the model. "
       "GIM's ranking is compared with plain attribution patching and a random ranking."),
    code(f'%gim circuit --clean "{IOI}" --corrupt "{IOI_ABC}" --target " Mary" --foil " John" --faithfulness 0.9', draws=True),
    md("## Confirm by patching heads\nThe two top heads of the table above, patched together:"),
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
    md("# Your own model\n\n`%gim load` takes a folder with `config.json`, `*.safetensors` (single or sharded) and "
       "`tokenizer.json`, or a Hugging Face repo id found in the local cache (`HF_HUB_CACHE`, `HF_HOME`, "
       "`~/.cache/huggingface/hub`). gim never downloads: fetch the model once with `huggingface-cli download`.\n\n"
       "Supported `model_type`s: gpt2, llama (incl. llama3 rope scaling), mistral, qwen2, qwen3, gemma, gemma2, phi3.\n\n"
       "On a machine with the model cached:\n\n"
       "```\n%gim load Qwen/Qwen2.5-1.5B --dtype bf16\n%gim load meta-llama/Llama-3.2-1B@main --device cuda:0\n"
       "%gim attribute \"The capital of France is\" --target \" Paris\" --contrast \" London\"\n"
       "%gim circuit --clean \"When Mary and John went to the store, John gave a drink to\" "
       "--corrupt \"When Mary and John went to the store, Kate gave a drink to\" --top 40\n```\n\n"
       "Here, with no internet, we load a folder instead — the same code path:"),
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
