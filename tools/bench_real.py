#!/usr/bin/env python3
"""`make bench-real`: gim and PyTorch timed on the same real checkpoint and prompt, alternated.

Runs, --runs times in turn (so that noise on the machine hits both):
    gim bench --model MODEL --methods gradient,gim --reps N
    python tools/torch_bench.py --model MODEL --reps N      (the float64 check on the first run only)
each a fresh process that loads the model once and times it hot (median of N after a warm-up), on
gim bench's paragraph. Their output is passed through; at the end a summary: per run the forward,
gradient and GIM medians of both, the ratio gim ÷ torch for each (median and range over the runs),
both processes' peak RSS, and how busy the rest of the machine was during each command (the other
processes' CPU, from /proc/stat less the command's own). Exit status 1 if any command failed (what did run is still summed up).

Usage: tools/bench_real.py [--model PATH.gguf|FOLDER] [--runs 3] [--reps 7] [--gim target/release/gim]
       [--python PY]   (RAYON_NUM_THREADS defaults to 2, as torch's 2 threads)
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("forward", "gradient", "gim")


def default_model():
    cache = os.environ.get("GIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gim")
    return os.path.join(cache, "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")


def busy_s():
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd):
    """Run cmd, stream its stdout (and let stderr through). Returns (rc, stdout lines, other
    load): the cores' worth of CPU that everything else on the machine used meanwhile (noise)."""
    print("$ " + " ".join(cmd), flush=True)
    b0, c0, t0 = busy_s(), children_cpu_s(), time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in p.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    rc = p.wait()
    b1, c1, t1 = busy_s(), children_cpu_s(), time.monotonic()
    other = None if b0 is None else max(0.0, (b1 - b0) - (c1 - c0)) / (t1 - t0)
    if other is not None:
        print(f"(everything else on the machine meanwhile: {other:.2f} cores busy)", flush=True)
    return rc, lines, other


def parse_table(lines):
    """{method: (tokens, median ms, peak RSS MB)} from `gim bench`'s markdown table (torch_bench
    prints the same columns: shape, tokens, method, median ms, × forward, tokens/s, peak RSS MB)."""
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[2] in METHODS and cells[1].isdigit():
            rows[cells[2]] = (int(cells[1]), float(cells[3]), float(cells[6]))
    return rows


def fmt_ratio(rs):
    if not rs:
        return "–"
    if len(rs) == 1:
        return f"{rs[0]:.2f}"
    return f"{statistics.median(rs):.2f} (range {min(rs):.2f}–{max(rs):.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--gim", default=str(ROOT / "target" / "release" / "gim"))
    ap.add_argument("--python", default=sys.executable, help="the PyTorch venv's python")
    a = ap.parse_args()
    if not Path(a.model).exists():
        sys.exit(f"bench-real: no model at {a.model}: fetch it with tools/fetch_model.sh, or pass MODEL=PATH")
    os.environ.setdefault("RAYON_NUM_THREADS", "2")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequantisation progress bar
    gim_cmd = [a.gim, "bench", "--model", a.model, "--methods", "gradient,gim", "--reps", str(a.reps)]
    torch_cmd = [a.python, str(ROOT / "tools" / "torch_bench.py"), "--model", a.model, "--reps", str(a.reps)]
    results = []  # per run: {"gim": rows, "torch": rows}
    failed = []
    for i in range(a.runs):
        res = {}
        for who, cmd in (("gim", gim_cmd), ("torch", torch_cmd if i == 0 else torch_cmd + ["--no-check"])):
            print(f"\n=== run {i + 1}/{a.runs}: {who} ===", flush=True)
            rc, out, other = run(cmd)
            rows = parse_table(out)
            res[who + "_other"] = other
            if rc != 0 or "gim" not in rows:
                failed.append(f"run {i + 1} {who} (exit {rc})")
            res[who] = rows
        results.append(res)

    print(f"\n## bench-real: {a.model}, median of {a.reps} reps per run, {a.runs} runs alternated, "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, torch 2 threads\n")
    print("| run | tokens gim/torch | forward ms gim / torch | gradient ms gim / torch | "
          "GIM ms gim / torch | GIM gim÷torch | peak RSS MB gim / torch | other load gim / torch |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = {m: [] for m in METHODS}

    def cell(rows, m, k):
        return f"{rows[m][k]:.0f}" if m in rows else "–"

    for i, res in enumerate(results):
        g, t = res.get("gim", {}), res.get("torch", {})
        for m in METHODS:
            if m in g and m in t:
                ratios[m].append(g[m][1] / t[m][1])
        gim_ratio = f"{g['gim'][1] / t['gim'][1]:.2f}" if "gim" in g and "gim" in t else "–"
        times = " | ".join(f"{cell(g, m, 1)} / {cell(t, m, 1)}" for m in METHODS)
        other = " / ".join("–" if res.get(w + "_other") is None else f"{res[w + '_other']:.2f}"
                           for w in ("gim", "torch"))
        print(f"| {i + 1} | {cell(g, 'forward', 0)} / {cell(t, 'forward', 0)} | {times} | {gim_ratio} "
              f"| {cell(g, 'gim', 2)} / {cell(t, 'gim', 2)} | {other} |")
    print("\nother load: cores' worth of CPU used by everything else on the machine during that command "
          "(0 = quiet; the 2-thread torch slows down badly once it is near 1).\n")
    for m in METHODS:
        print(f"{m:>8} gim ÷ torch: {fmt_ratio(ratios[m])}")
    toks = {(r["gim"].get("forward", (None,))[0], r["torch"].get("forward", (None,))[0]) for r in results}
    for tg, tt in toks:
        if tg is not None and tt is not None and tg != tt:
            print(f"WARNING: gim tokenized the prompt into {tg} tokens, transformers into {tt}")
    if failed:
        print("FAILED: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
