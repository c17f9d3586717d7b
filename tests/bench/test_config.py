"""bench/config.py: a frozen TrainConfig made of the core's dataclasses, flat keys kept."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import yaml

from bench.config import (CONFIG_DIR, FLAT_KEYS, ConfigError, IOSettings, OptimSettings, TrainConfig, apply_overrides,
                          config_from_dict, config_to_dict, load_config)
from t2v_turbo_core.distillation import DistillationConfig
from t2v_turbo_core.lora import LoraSettings

# run.json's "config" keys before the config had sections: every reader of a manifest
# (bench/runs.py, generate, ablate, report, ls, export, --resume) uses these names.
MANIFEST_KEYS = [
    "teacher", "variant", "rm_vid", "rm_img", "steps", "batch_size", "lr", "lr_warmup", "max_grad_norm", "weight_decay",
    "seed", "mixed_precision", "lora_rank", "lora_alpha", "lora_dropout", "skip", "w_min", "w_max", "loss_type", "huber_c",
    "target", "ema_decay", "export_weights", "beta_img", "beta_vid", "reward_weighting", "image_reward_frames",
    "video_reward_frames", "w_proj_init", "grad_checkpointing", "optimizer", "checkpoint_every", "keep_checkpoints",
    "log_every", "lora_forward", "data", "weights", "v2",
]  # fmt: skip


def test_sections_are_the_cores_dataclasses_and_flat_names_read_through():
    cfg = load_config("tiny")
    assert type(cfg.distill) is DistillationConfig and type(cfg.lora) is LoraSettings
    assert type(cfg.optim) is OptimSettings and type(cfg.io) is IOSettings
    assert (cfg.lr, cfg.lora_rank, cfg.lora_alpha, cfg.skip, cfg.log_every) == (cfg.optim.lr, cfg.lora.rank, cfg.lora.alpha,
                                                                                cfg.distill.skip, cfg.io.log_every)
    assert cfg.lora_settings() is cfg.lora
    # The distill section is what Algorithm 1 gets, with an unused reward weighted 0.
    vcm = load_config("tiny", ["variant=vcm"])
    assert vcm.distillation_config() == dataclasses.replace(vcm.distill, beta_img=0.0, beta_vid=0.0)
    with pytest.raises(AttributeError):
        cfg.no_such_key


def test_defaults_have_one_home():
    # The sections' defaults are the core's; bench changes only the training precision.
    cfg = TrainConfig()
    assert cfg.lora == LoraSettings() and cfg.distill == DistillationConfig(mixed_precision="bf16")
    assert cfg.optim == OptimSettings() and cfg.io == IOSettings()
    # A shipped YAML holds only what its teacher changes.
    default = config_to_dict(TrainConfig())
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    assert raw and all(raw[k] != default[k] for k in raw), [k for k in raw if raw[k] == default[k]]


def test_frozen_all_the_way_down():
    cfg = load_config("tiny", ["data.fps=8"])
    for obj, name in ((cfg, "teacher"), (cfg.distill, "skip"), (cfg.lora, "rank"), (cfg.optim, "lr"), (cfg.io, "log_every")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, 1)
    with pytest.raises(TypeError, match="read-only"):
        cfg.data["fps"] = 9
    assert dict(cfg.data) == {"fps": "8"} and pickle.loads(pickle.dumps(cfg)) == cfg


def test_overrides_by_flat_or_section_name_are_the_same():
    flat = load_config("tiny", ["lr=0.5", "lora_rank=4", "skip=5", "log_every=2", "steps=7"])
    dotted = load_config("tiny", ["optim.lr=0.5", "lora.rank=4", "distill.skip=5", "io.log_every=2", "optim.steps=7"])
    assert flat == dotted and (flat.lr, flat.lora.rank, flat.distill.skip, flat.io.log_every) == (0.5, 4, 5, 2)


@pytest.mark.parametrize("override, message", [
    ("lr=fast", r"lr='fast': expected a number \(like the current value 0.001\)"),
    ("steps=1.5", r"steps='1.5': expected an integer \(like the current value 300\)"),
    ("grad_checkpointing=maybe", "expected true/false"),
    ("lora.rank=x", "lora.rank='x': expected an integer"),
    ("lora.bogus=1", "unknown config key 'lora.bogus'"),
    ("optimizer.lr=1", "unknown config key 'optimizer.lr'"),
    ("w_proj_init=random", "w_proj_init='random'"),
])  # fmt: skip
def test_an_override_of_the_wrong_type_is_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_yaml_may_write_a_section_as_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"teacher": "tiny", "rm_img": "image", "rm_vid": "viclip", "mixed_precision": "no",
                                    "distill": {"skip": 5, "beta_img": 0.5}, "lora": {"rank": 4}, "optim": {"lr": 0.01}}))
    cfg = load_config(path)
    assert (cfg.skip, cfg.beta_img, cfg.lora_rank, cfg.lr) == (5, 0.5, 4, 0.01)
    path.write_text(yaml.safe_dump({"teacher": "tiny", "lora": {"rnak": 4}}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lora.rnak"):
        load_config(path)
    path.write_text(yaml.safe_dump({"teacher": "tiny", "rm_img": "image", "rm_vid": "viclip", "lr": "1e-3"}))
    with pytest.raises(ConfigError, match="lr='1e-3' must be a number"):  # YAML 1.1 reads 1e-3 as a string
        load_config(path)


def test_the_manifest_keeps_its_flat_keys_and_round_trips():
    cfg = load_config("tiny", ["data.annotations=/x.csv", "v2.motion_gs=0"])
    d = config_to_dict(cfg)
    assert list(d) == MANIFEST_KEYS == list(FLAT_KEYS)
    assert type(d["data"]) is dict and config_from_dict(d) == cfg
    # A manifest written before a key existed reads back with that key's default.
    old = {k: v for k, v in d.items() if k not in ("optimizer", "w_proj_init")}
    assert config_from_dict({**old, "gone_key": 1}) == cfg
    # apply_overrides leaves the config it was given as it was.
    assert apply_overrides(cfg, ["lr=0.5"]).lr == 0.5 and cfg.lr == 0.001


def test_a_run_made_before_lora_forward_existed_reads_back_as_peft_forward():
    """Runs recorded before the key existed ran peft's layer forward; today's default is the
    merged one. Read back, such a run says what it ran with (a resume then asks for it)."""
    from bench.config import config_from_dict, config_to_dict

    today = config_to_dict(load_config("tiny"))
    assert today["lora_forward"] == "merged"
    old = {k: v for k, v in today.items() if k != "lora_forward"}
    assert config_from_dict(old).distill.lora_forward == "adapter"
    assert config_from_dict(today).distill.lora_forward == "merged"
    with pytest.raises(ConfigError, match="lora_forward"):
        load_config("tiny", ["lora_forward=fused"])
