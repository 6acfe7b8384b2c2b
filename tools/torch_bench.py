#!/usr/bin/env python3
"""The PyTorch anchor, measured on this machine beside `gim bench` (see `make bench-torch`).

Random-weight transformers models shaped like `gim bench`'s (GPT-2 small, Llama-3.2-1B), f32, 2 threads.
Times a forward pass with the logits at the last position only (what attribution needs) and a plain
gradient of the top logit with respect to the input embeddings (no weight gradients). CANDLE.md
measured GIM's four rules at +3% over this gradient in PyTorch. With `--ig`, also integrated
gradients of 32 steps batched 16 at a time (what `gim` does), to show PyTorch's own integrated-
gradients ÷ gradient ratio on this machine. Prints a markdown table (median ms).
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="gpt2-small")
    ap.add_argument("--tokens", default="32,128")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ig", action="store_true", help="also time integrated gradients (32 steps)")
    ap.add_argument("--ig-steps", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
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
