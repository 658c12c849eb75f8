"""This project against PyTorch eager, network by network, on this machine's CPU.

Each round runs every row twice: once through `cmdv bench` (release build) and once through
`bench_torch.py` (PyTorch, the same configurations), one after the other, so that the slow
drifts of a shared machine hit both alike. Both use the same number of threads. Prints a
Markdown table: per row the minimum and the median over the rounds of each side's times, and
the ratio PyTorch / this project (above 1: this project is faster).

    python tests/reference/bench_vs_pytorch.py --cmdv target/release/cmdv [--rounds 5]
        [--threads 2] [--rows ae-tiny,dit-tiny,...] [--iters 3]

Pinned as bench_torch.py. Not run in CI. The runs take minutes (SD1.5 and DiT-L most of it);
`--rows` picks a subset.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# row -> the `cmdv bench` arguments that time the same network.
CMDV = {
    "ae-tiny": ["ae", "--preset", "tiny"],
    "ae-teaching": ["ae", "--preset", "teaching"],
    "ae-ucf64-depth2": ["ae", "--preset", "ucf64", "--depth", "2"],
    "dit-tiny": ["dit", "--preset", "tiny"],
    "dit-S": ["dit", "--preset", "S"],
    "dit-L": ["dit", "--preset", "L"],
    "unet-teaching": ["unet", "--config", "teaching", "--height", "32", "--width", "32"],
    "unet-sd15": ["unet", "--config", "sd15", "--height", "64", "--width", "64"],
    "generate-teaching": ["generate", "--preset", "teaching", "--steps", "10",
                          "--motion-steps", "10"],
}
# Rows whose networks take seconds: one timed iteration per round.
SLOW = {"dit-L", "unet-sd15", "ae-ucf64-depth2", "generate-teaching"}
NUM = r"\s*([0-9.]+)\s*"


def run(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def parse_cmdv(row, out):
    """{quantity: (min, median)} from a `cmdv bench` table."""
    if row.startswith("ae-"):
        got = {}
        for stage in ("encode", "decode"):
            m = re.search(rf"\|\s*{stage}\s*\|{NUM}\|{NUM}\|", out)
            got[f"{row}-{stage}"] = (float(m[2]), float(m[1]))
        return got
    if row.startswith("generate-"):
        stages = {}
        for stage in ("text", "content", "motion", "decode"):
            m = re.search(rf"\|\s*{stage}\s*\|{NUM}\|{NUM}\|", out)
            stages[f"{row}-{stage}"] = float(m[2])
        got = {k: (v, v) for k, v in stages.items()}
        total = sum(stages.values())
        got[row] = (total, total)
        return got
    m = re.search(rf"\|---:\|---:\|---:\|\n\|{NUM}\|{NUM}\|", out)
    name = f"{row}-step" if row.startswith("dit-") else row
    return {name: (float(m[2]), float(m[1]))}


def parse_torch(out):
    got = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            got[r["row"]] = (min(r["ms"]), statistics.median(r["ms"]))
    return got


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cmdv", required=True, help="the release cmdv binary")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="timed runs per round (fast rows)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default=",".join(CMDV))
    parser.add_argument("--python", default=sys.executable, help="the Python with torch")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in CMDV]
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {', '.join(CMDV)}")
    ours, theirs = {}, {}
    for rnd in range(args.rounds):
        for row in rows:
            iters = "1" if row in SLOW else str(args.iters)
            print(f"round {rnd + 1}/{args.rounds}: {row}", file=sys.stderr, flush=True)
            out = run([args.cmdv, "bench", *CMDV[row], "--iters", iters], args.threads)
            for k, v in parse_cmdv(row, out).items():
                ours.setdefault(k, []).append(v)
            out = run([args.python, os.path.join(HERE, "bench_torch.py"), row, "--iters", iters,
                       "--threads", str(args.threads)], args.threads)
            for k, v in parse_torch(out).items():
                theirs.setdefault(k, []).append(v)

    def summary(samples):
        return min(s[0] for s in samples), statistics.median(s[1] for s in samples)

    print(f"{args.rounds} interleaved rounds, {args.threads} threads each, float32, "
          "ms (guided steps: PyTorch one batch of 2, as diffusers; this project as its pipeline "
          "runs them, on the CPU the two rows as two calls at once)")
    print("| network | this project min | median | PyTorch min | median | ratio (min) "
          "| ratio (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ours:
        if name not in theirs:
            continue
        (a_min, a_med), (b_min, b_med) = summary(ours[name]), summary(theirs[name])
        print(f"| {name} | {a_min:.1f} | {a_med:.1f} | {b_min:.1f} | {b_med:.1f} "
              f"| {b_min / a_min:.2f}x | {b_med / a_med:.2f}x |")


if __name__ == "__main__":
    main()
