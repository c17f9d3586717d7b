"""bench train's training curves: TensorBoard event files (read back with tensorboard's own
reader) hold every logged term at every logged step, also across a kill and resume."""

import csv
import importlib.util

import pytest
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.config import load_config
from bench.train import train

TAGS = {"loss/total": "loss", "loss/consistency": "loss_cd", "loss/reward": "loss_reward", "reward/image": "reward_img",
        "reward/video": "reward_vid", "train/grad_norm": "grad_norm", "train/lr": "lr"}


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_curves_hold_every_term_and_survive_a_resume(random_zoo, tmp_path):
    cfg = load_config("tiny", [f"weights.tiny_zoo={random_zoo}", "batch_size=1", "lora_rank=4", "lora_alpha=4",
                               "log_every=1", "checkpoint_every=2", "steps=3", "variant=vcm+img+vid"])

    class Killed(Exception):
        pass

    def kill_at_three(step, logs):
        if step == 3:
            raise Killed  # step 3 is logged, its checkpoint is not written: the resume redoes it

    with pytest.raises(Killed):
        train(cfg, tmp_path / "run", device="cpu", on_step=kill_at_three)
    train(cfg, tmp_path / "run", resume=True, device="cpu")

    curves = _scalars(tmp_path / "run" / "tensorboard" / "run")
    assert set(TAGS) | {"train/seconds_per_step"} <= set(curves)
    with open(tmp_path / "run" / "train_log.csv") as fh:
        rows = {int(r["step"]): r for r in csv.DictReader(fh)}
    for tag, column in TAGS.items():
        steps = [s for s, _ in curves[tag]]
        assert steps == [1, 2, 3], (tag, steps)  # the killed pass's step 3 was purged, not plotted twice
        for step, value in curves[tag]:
            assert value == pytest.approx(float(rows[step][column]), rel=1e-4, abs=1e-9), (tag, step)
    assert all(v > 0 for _, v in curves["train/seconds_per_step"])


def test_vcm_logs_no_reward_curves_and_trackers_can_be_turned_off(random_zoo, tmp_path):
    cfg = load_config("tiny", [f"weights.tiny_zoo={random_zoo}", "batch_size=1", "lora_rank=4", "lora_alpha=4",
                               "log_every=1", "steps=1", "variant=vcm"])
    train(cfg, tmp_path / "vcm", device="cpu", tracker_dir=tmp_path / "board")
    curves = _scalars(tmp_path / "board" / "vcm")  # bench ablate's layout: one directory, a run per variant
    assert "loss/consistency" in curves and not {"reward/image", "reward/video"} & set(curves)
    train(cfg, tmp_path / "quiet", device="cpu", tracker="none")
    assert not (tmp_path / "quiet" / "tensorboard").exists() and (tmp_path / "quiet" / "train_log.csv").is_file()


def test_wandb_asked_for_but_not_installed_is_a_clear_error(random_zoo, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    _register_verbs()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r"), "--tracker", "wandb",
                                      f"weights.tiny_zoo={random_zoo}", "steps=1"])
    assert result.exit_code == 2 and "wandb" in result.output and "not installed" in result.output
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r"), "--tracker", "mlflow", "steps=1"])
    assert result.exit_code == 2 and "unknown tracker" in result.output
    assert not (tmp_path / "r").exists()


def test_wandb_tracker_gets_every_curve_when_installed(random_zoo, tmp_path, monkeypatch):
    """W&B through accelerate's WandBTracker; a stand-in `wandb` module records the calls."""
    import importlib.machinery
    import sys
    import types

    calls = {"init": None, "log": [], "finished": False}

    class Run:
        def log(self, values, step=None):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finished"] = True

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = load_config("tiny", [f"weights.tiny_zoo={random_zoo}", "batch_size=1", "lora_rank=4", "lora_alpha=4",
                               "log_every=1", "steps=2", "variant=vcm+img"])
    train(cfg, tmp_path / "run", device="cpu", tracker="wandb")
    assert calls["init"]["project"] == "t2v-turbo-bench" and calls["init"]["name"] == "run"
    assert calls["init"]["config"]["variant"] == "vcm+img" and calls["finished"]
    assert [s for s, _ in calls["log"]] == [1, 2]
    assert {"loss/total", "loss/consistency", "loss/reward", "reward/image", "train/grad_norm", "train/lr",
            "train/seconds_per_step"} <= set(calls["log"][-1][1])
    assert not (tmp_path / "run" / "tensorboard").exists()
