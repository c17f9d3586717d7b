"""The recipe keys of `bench train`: validated, recorded in run.json, and doing what they say
(tiny random zoo; a couple of 2-step runs)."""

import json
import sys
import types

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.config import ConfigError, load_config
from bench.train import TrainingError, make_optimizer, train


def _cfg(zoo, *extra):
    return load_config("tiny", [f"weights.tiny_zoo={zoo}", "batch_size=2", "lora_rank=4", "lora_alpha=4",
                                "log_every=1", "checkpoint_every=100", *extra])


@pytest.mark.parametrize(
    "override, message",
    [
        ("target=both", "target"),
        ("export_weights=theta", "export_weights"),
        ("reward_weighting=mixed", "reward_weighting"),
        ("w_proj_init=random", "w_proj_init"),
        ("optimizer=sgd", "optimizer"),
        ("grad_checkpointing=maybe", "grad_checkpointing"),
        ("image_reward_frames=0", "image_reward_frames"),
    ],
)
def test_bad_recipe_values_are_config_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_recipe_constraints():
    with pytest.raises(ConfigError, match="export_weights=ema needs target=ema"):
        load_config("vc2", ["export_weights=ema"])  # vc2.yaml: target=online
    assert load_config("vc2", ["target=ema", "export_weights=ema"]).export_weights == "ema"
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        load_config("tiny", ["grad_checkpointing=true"])
    with pytest.raises(ConfigError, match="internvid2 takes 4 or 8"):
        load_config("vc2", ["video_reward_frames=6"])
    with pytest.raises(ConfigError, match="viclip takes 8"):
        load_config("ms", ["video_reward_frames=4"])


def test_shipped_reproduction_configs_follow_the_released_code():
    vc2 = load_config("vc2")
    assert vc2.recipe() == {
        "target": "online", "export_weights": "online", "reward_weighting": "released",
        "effective_weights_cd_img_vid": [1.0, 1.0, 0.666667], "image_reward_frames": 5, "video_reward_frames": 8,
        "w_proj_init": "released", "grad_checkpointing": True, "optimizer": "adamw", "lora_forward": "merged",
    }  # fmt: skip
    ms = load_config("ms")
    assert (ms.target, ms.reward_weighting, ms.image_reward_frames, ms.w_proj_init, ms.grad_checkpointing) == (
        "online", "released", 5, "released", False)
    # The library's defaults stay the paper's.
    paper = load_config("tiny")
    assert (paper.target, paper.reward_weighting, paper.image_reward_frames, paper.w_proj_init) == ("ema", "paper", 6, "zero")
    # Every value of the reproduction configs names its source.
    from bench.config import CONFIG_DIR

    for name in ("vc2.yaml", "ms.yaml"):
        for line in (CONFIG_DIR / name).read_text().splitlines():
            if line and not line.startswith("#") and not line.startswith(("data:", "weights:")):
                assert any(tag in line for tag in ("[paper]", "[released]", "[both]", "[here]")), f"{name}: {line}"


def test_run_json_records_the_convention_and_ema_export(random_zoo, tmp_path):
    cfg = _cfg(random_zoo, "steps=2", "variant=vcm+img+vid", "reward_weighting=released", "w_proj_init=released",
               "target=ema", "export_weights=ema", "ema_decay=0.5")
    train(cfg, tmp_path / "run", device="cpu")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["recipe"]["reward_weighting"] == "released" and run["recipe"]["effective_weights_cd_img_vid"] == [1.0, 1.0, 0.666667]
    assert run["recipe"]["w_proj_init"] == "released" and run["config"]["export_weights"] == "ema"
    adapter = load_file(str(tmp_path / "run" / "student" / "adapter.safetensors"))
    ckpt = tmp_path / "run" / "checkpoints" / "step-000002"
    ema = load_file(str(ckpt / "ema.safetensors"))
    online = load_file(str(ckpt / "student.safetensors"))
    assert ema and set(ema) <= set(adapter)
    for name, value in ema.items():  # the exported student is theta^-, not theta
        torch.testing.assert_close(adapter[name], value, rtol=0, atol=0)
    assert any(not torch.equal(online[n], ema[n]) for n in ema)
    # released w projection: frozen (not in the EMA), but saved with the student
    assert not any(n.endswith("cond_proj.base_layer.weight") for n in ema)
    assert any(n.endswith("cond_proj.base_layer.weight") for n in adapter)
    rows = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    assert len(rows) == 3


def test_adamw8bit_is_a_clear_error_without_bitsandbytes(monkeypatch):
    cfg = load_config("tiny", ["optimizer=adamw8bit"])
    params = [torch.nn.Parameter(torch.zeros(3))]
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, as when not installed
    with pytest.raises(TrainingError, match="bitsandbytes, which is not installed"):
        make_optimizer(cfg, params)


def test_adamw8bit_uses_bitsandbytes_when_installed(monkeypatch):
    made = {}

    class AdamW8bit(torch.optim.AdamW):
        def __init__(self, params, **kwargs):
            made.update(kwargs)
            super().__init__(params, **kwargs)

    fake = types.ModuleType("bitsandbytes")
    fake.optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    opt = make_optimizer(load_config("tiny", ["optimizer=adamw8bit", "lr=2e-5"]), [torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(opt, AdamW8bit) and made["lr"] == 2e-5 and made["betas"] == (0.9, 0.999)
    assert type(make_optimizer(load_config("tiny"), [torch.nn.Parameter(torch.zeros(3))])) is torch.optim.AdamW


def test_cli_adamw8bit_without_bitsandbytes_exits_2_and_writes_nothing(random_zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    _register_verbs()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r"), f"weights.tiny_zoo={random_zoo}",
                                      "optimizer=adamw8bit", "steps=1"])
    assert result.exit_code == 2 and "bitsandbytes" in result.output
    assert not (tmp_path / "r").exists()


def test_cli_refuses_a_bad_recipe_value_with_exit_2(tmp_path):
    _register_verbs()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r"), "reward_weighting=sometimes"])
    assert result.exit_code == 2 and "reward_weighting" in result.output
    assert not (tmp_path / "r").exists()


def test_ablation_spec_teacher_protocol_key(tmp_path):
    from bench.ablate import AblationSpec, _labels, load_spec

    assert load_spec().teacher_protocol == "matched"
    with pytest.raises(ConfigError, match="teacher_protocol='own'"):
        load_spec(overrides={"teacher_protocol": "own"})
    with pytest.raises(ConfigError, match="tiny teacher has no sampler of its own"):
        load_spec(overrides={"teacher_protocol": "native"})
    spec = AblationSpec(train_config="vc2", suite="vbench", benchmark="vbench", teacher_protocol="native")
    spec.validate()
    assert _labels(spec, teacher=True) == ("vbench_teacher50_native", "vbench_teacher50_native-vbench")
    assert _labels(spec, teacher=False)[0] == "vbench_4step"
