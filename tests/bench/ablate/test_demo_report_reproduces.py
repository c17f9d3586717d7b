"""The committed demo report (reports/tiny-ablation.*) is what the code trains today.

A fresh `make demo` must reproduce the committed students bit for bit. That broke once without
any test noticing: building the LoRA student on the meta device stopped the throwaway random
init of a full UNet, which had been drawing from the global RNG, so every later draw (LoRA's
init, t, w, noise) moved and the students changed while the teacher did not. This test trains
the first steps of two of the report's variants with the demo's own config and compares them
with the report's committed training logs, so any change to what training draws or computes
shows up here, before a half-hour demo run disagrees with the README.
"""

import csv
import json
from pathlib import Path

import pytest

from bench.config import load_config
from bench.train import train

REPO = Path(__file__).resolve().parents[3]
RUNS = REPO / "reports" / "tiny-ablation_runs"
STEPS = 5  # the first logged row of the demo's runs (log_every 5)


def _logged_row(path: Path, step: int) -> dict[str, str]:
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if int(row["step"]) == step:
                return row
    raise AssertionError(f"{path} has no row for step {step}")


@pytest.mark.parametrize("job", ["vcm", "vcm+img+vid-viclip"])
def test_first_steps_match_the_committed_report(job, tmp_path):
    spec = json.loads((RUNS / "ablation_spec.json").read_text())
    record = json.loads((RUNS / job / "run.json").read_text())
    committed = _logged_row(RUNS / job / "train_log.csv", STEPS)
    config = record["config"]
    overrides = [*spec["train_overrides"], f"variant={config['variant']}", f"rm_vid={config['rm_vid']}",
                 f"steps={STEPS}", f"log_every={STEPS}", f"seed={record['seeds']['seed']}"]
    train(load_config(spec["train_config"], overrides), tmp_path / "run", device="cpu")
    ours = _logged_row(tmp_path / "run" / "train_log.csv", STEPS)
    for column in ("lr", "loss", "loss_cd", "loss_reward", "reward_img", "reward_vid", "grad_norm"):
        # The log keeps 6 significant digits: equal strings are equal to float rounding at most.
        assert ours[column] == committed[column], (
            f"{job} step {STEPS} {column}: {ours[column]} here, {committed[column]} in the committed "
            f"report (trained on {record['git']['commit'][:7]}); retrain the demo report or find what moved")
