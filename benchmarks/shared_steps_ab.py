"""Tiny `bench train` runs of this checkout, reading the steps another variant shared, against a
baseline commit's runs, interleaved (old, new, old, new) so that the machine's load weighs on both.

First one producer run (this checkout, `--producer` variant) writes the shared steps
(`bench.step_cache`), timed too (its cost of writing them). Then, for each `--variants` entry,
`--repeats` pairs of runs: the baseline tree's `train()` alone and this checkout's `train()` with
`shared_steps`. Each run is its own process on one thread (as `bench ablate` runs a job). The
seconds per step come from each run's train_log.csv (steps 2..N: start-up and the first step left
out). The consumer's losses must equal the baseline's exactly (every logged column).

    .venv/bin/python benchmarks/shared_steps_ab.py --old-src /tmp/base --old-label 6cfeda9 [--steps 30]
        [--variants vcm,vcm+img+vid:viclip] [--repeats 2] [--out benchmarks/results/shared_steps_ab.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DRIVER = """
import sys, torch
torch.set_num_threads(1)
from bench.config import load_config
from bench.train import train

from t2v_turbo_core.safe_io import atomic_write_json
variant, rm, steps, run_dir, shared = sys.argv[1:6]
cfg = load_config("tiny", [f"variant={variant}", f"rm_vid={rm}", f"steps={steps}", "log_every=1", "checkpoint_every=100000"])
kwargs = {"shared_steps": shared} if shared != "-" else {}
train(cfg, run_dir, device="cpu", tracker="none", **kwargs)
"""


def _run(src: Path, variant: str, steps: int, run_dir: Path, shared: str) -> dict:
    name, _, rm = variant.partition(":")
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", DRIVER, name, rm or "viclip", str(steps), str(run_dir), shared],
                   check=True, env=env, cwd=src, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with open(run_dir / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    secs = [float(r["seconds"]) for r in rows]
    losses = [[r[k] for k in r if k != "seconds"] for r in rows]
    read = json.loads((run_dir / "run.json").read_text()).get("shared_steps_read")  # None: the baseline tree
    return {"wall": wall, "seconds_per_step": (secs[-1] - secs[0]) / (len(secs) - 1), "losses": losses, "shared_steps_read": read}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old-src", required=True, type=Path)
    p.add_argument("--old-label", default="")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--producer", default="vcm+img+vid:viclip")
    p.add_argument("--variants", default="vcm,vcm+img+vid:viclip")
    p.add_argument("--out", default="benchmarks/results/shared_steps_ab.json")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="shared-steps-ab-"))
    shared = work / "shared"
    load_before = os.getloadavg()
    try:
        producer_old = _run(args.old_src, args.producer, args.steps, work / "producer-old", "-")
        producer = _run(REPO, args.producer, args.steps, work / "producer", str(shared))
        rows = [{"variant": args.producer, "role": "producer", "old_seconds_per_step": producer_old["seconds_per_step"],
                 "new_seconds_per_step": producer["seconds_per_step"],
                 "speedup": producer_old["seconds_per_step"] / producer["seconds_per_step"],
                 "losses_identical": producer_old["losses"] == producer["losses"]}]
        print(f"producer {args.producer}: old {producer_old['seconds_per_step']:.3f} s/step, new {producer['seconds_per_step']:.3f}",
              flush=True)
        for variant in args.variants.split(","):
            old, new = [], []
            for r in range(args.repeats):
                old.append(_run(args.old_src, variant, args.steps, work / f"{variant}-old-{r}", "-"))
                new.append(_run(REPO, variant, args.steps, work / f"{variant}-new-{r}", str(shared)))
            o = statistics.median(x["seconds_per_step"] for x in old)
            n = statistics.median(x["seconds_per_step"] for x in new)
            row = {"variant": variant, "role": "reads the shared steps", "old_seconds_per_step": o, "new_seconds_per_step": n,
                   "old_all": [x["seconds_per_step"] for x in old], "new_all": [x["seconds_per_step"] for x in new],
                   "speedup": o / n, "losses_identical": all(x["losses"] == old[0]["losses"] for x in old + new),
                   "shared_steps_read": [x["shared_steps_read"] for x in new]}
            rows.append(row)
            print(f"{variant:<22}: old {o:.3f} s/step, new {n:.3f} s/step, {o / n:.3f}x, losses identical: {row['losses_identical']}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"old_src": str(args.old_src), "old_label": args.old_label, "steps": args.steps, "threads": 1, "rows": rows,
              "load": {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()}}
    out = Path(args.out)
    atomic_write_json(out, result, indent=2, allow_nan=True)
    return 0 if all(r["losses_identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
