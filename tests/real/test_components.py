"""Real components from a training config: one clear error for everything missing."""

import pytest
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.components import load_real_rewards, load_real_teacher
from bench.config import load_config
from bench.weights import MissingWeightsError

ENV_VARS = ("T2V_MS_DIR", "T2V_VC2_CKPT", "HPS_V21_CKPT", "PICKSCORE_DIR", "VICLIP_CKPT", "INTERNVIDEO2_CKPT")


@pytest.fixture
def bare_machine(monkeypatch, tmp_path):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_missing_reward_models_are_listed_together(bare_machine):
    cfg = load_config("ms")  # T2V-Turbo (MS): HPSv2.1 + ViCLIP
    with pytest.raises(MissingWeightsError) as err:
        load_real_rewards(cfg)
    text = str(err.value)
    assert "HPS_V21_CKPT" in text and "VICLIP_CKPT" in text
    assert "hpsv21" in text and "viclip" in text


def test_vcm_variant_needs_no_reward_weights(bare_machine):
    assert load_real_rewards(load_config("vc2", ["variant=vcm"])) == (None, None)


def test_missing_teacher_names_the_variable(bare_machine):
    with pytest.raises(MissingWeightsError, match="T2V_VC2_CKPT"):
        load_real_teacher(load_config("vc2"))


def test_bench_train_on_a_machine_without_checkpoints_exits_2(bare_machine):
    _register_verbs()
    run_dir = bare_machine / "run"
    result = CliRunner().invoke(app, ["train", "--config", "ms", "--run-dir", str(run_dir), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "T2V_MS_DIR" in result.output
    assert not run_dir.exists()  # nothing half-made is left behind
