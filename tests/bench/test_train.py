"""bench train: run directory, logs, resume, NaN stop, two processes (tiny random zoo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.config import load_config
from bench.train import LOG_COLUMNS, TrainingError, train

REPO = Path(__file__).resolve().parents[2]


def _cfg(zoo, *extra):
    return load_config("tiny", [f"weights.tiny_zoo={zoo}", "batch_size=2", "lora_rank=4", "lora_alpha=4",
                                "log_every=1", "checkpoint_every=2", *extra])


def test_run_directory_records_everything(random_zoo, tmp_path):
    cfg = _cfg(random_zoo, "steps=3", "variant=vcm+img+vid", "rm_vid=internvid2")
    train(cfg, tmp_path / "run", device="cpu")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "finished" and run["steps"] == 3
    assert run["config"]["variant"] == "vcm+img+vid" and run["config"]["rm_vid"] == "internvid2"
    assert run["seeds"] == {"seed": 0} and "commit" in run["git"]
    assert {"torch", "diffusers", "peft", "accelerate"} <= set(run["versions"])
    rows = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == list(LOG_COLUMNS) and len(rows) == 4
    last = dict(zip(LOG_COLUMNS, rows[-1].split(",")))
    assert float(last["reward_img"]) == float(last["reward_img"]) and float(last["reward_vid"]) == float(last["reward_vid"])
    adapter = load_file(str(tmp_path / "run" / "student" / "adapter.safetensors"))
    assert any("lora_" in k for k in adapter) and any("cond_proj" in k for k in adapter)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-000002", "step-000003"]  # keep_checkpoints = 2


def test_resume_continues_exactly_like_an_uninterrupted_run(random_zoo, tmp_path):
    cfg = _cfg(random_zoo, "steps=4", "variant=vcm+img")
    train(cfg, tmp_path / "straight", device="cpu")

    class Killed(Exception):
        pass

    def kill_at_three(step, logs):
        if step == 3:
            raise Killed  # after step 3's update, before its checkpoint: like a kill -9
    with pytest.raises(Killed):
        train(cfg, tmp_path / "resumed", device="cpu", on_step=kill_at_three)
    assert not (tmp_path / "resumed" / "student").exists()
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, tmp_path / "resumed", device="cpu")
    train(cfg, tmp_path / "resumed", resume=True, device="cpu")
    a = load_file(str(tmp_path / "straight" / "student" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "student" / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(random_zoo, tmp_path, monkeypatch):
    from t2v_turbo_core import distillation

    real_step = distillation.ConsistencyDistiller.step
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(distillation.ConsistencyDistiller, "step", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss.*step 2.*step-000002"):
        train(_cfg(random_zoo, "steps=5"), tmp_path / "run", device="cpu")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed"
    assert (tmp_path / "run" / "checkpoints" / "step-000002" / "student.safetensors").is_file()
    assert not (tmp_path / "run" / "student").exists()


def test_cli_rejects_bad_config_values(random_zoo, tmp_path):
    _register_verbs()
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--variant", "vcm+foo", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "variant" in result.output
    result = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "r"), "lr=fast"])
    assert result.exit_code == 2 and "lr" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.integration
def test_two_processes_with_accelerate(random_zoo, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "-m", "bench", "train", "--device", "cpu", "--variant", "vcm", "--run-dir", str(tmp_path / "run"),
           "steps=2", "batch_size=1", "lora_rank=4", "lora_alpha=4", "checkpoint_every=2", f"weights.tiny_zoo={random_zoo}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "finished" and run["processes"] == 2
    assert {p.name for p in (tmp_path / "run" / "checkpoints" / "step-000002").iterdir()} >= {"rng-0.pt", "rng-1.pt"}
