"""T2V-Turbo-v2's full fine-tuning (v2.finetune=full): the whole UNet trains from the cache, with
no target network (target=online) and the released per-group learning rates; the run's student
holds every weight and generates."""

import json

import torch
from safetensors.torch import load_file
from tests.helpers.cli import invoke_bench
from tests.helpers.tinyworld import SMALL_V2 as SMALL


def _ok(args):
    result = invoke_bench(args)
    assert result.exit_code == 0, result.output
    return result


def test_optimizer_groups_put_the_temporal_transformers_at_their_own_rate(random_zoo):
    from bench.config import load_config
    from bench.runs import load_teacher
    from bench.v2 import optimizer_groups, prepare_student, student_lora, temporal_parameter_names

    cfg = load_config("tiny_v2", [f"weights.tiny_zoo={random_zoo}", "v2.finetune=full", "v2.temporal_lr_scale=0.25"])
    teacher = load_teacher(cfg)
    student = prepare_student(cfg, teacher.make_student(student_lora(cfg)))
    names = dict(student.named_parameters())
    assert all(p.requires_grad for p in names.values()) and not any("lora_" in n for n in names)
    temporal = temporal_parameter_names(student)
    # diffusers' UNet3D: the temporal transformer after the input conv and each block's.
    assert temporal and all(n.startswith("transformer_in.") or ".temp_attentions." in n for n in temporal)
    assert any(n.startswith("transformer_in.") for n in temporal) and any(".temp_attentions." in n for n in temporal)
    groups = {g["name"]: g for g in optimizer_groups(cfg, student)}
    assert groups["temporal"]["lr_scale"] == 0.25 and groups["other"]["lr_scale"] == 1.0
    ids = {n: id(p) for n, p in names.items()}
    assert {id(p) for p in groups["temporal"]["params"]} == {ids[n] for n in temporal}
    assert len(groups["temporal"]["params"]) + len(groups["other"]["params"]) == len(names)
    # Scale 1 (the released default) or v1: one group, as before the groups existed.
    assert [g["name"] for g in optimizer_groups(load_config("tiny_v2", [f"weights.tiny_zoo={random_zoo}"]), student)] == ["all"]
    # The LoRA student (tiny_v2's default) trains adapters, the w projection and the motion input only.
    lora_cfg = load_config("tiny_v2", [f"weights.tiny_zoo={random_zoo}"])
    lora_student = prepare_student(lora_cfg, teacher.make_student(student_lora(lora_cfg)))
    assert any("lora_" in n for n, p in lora_student.named_parameters() if p.requires_grad)
    assert not all(p.requires_grad for p in lora_student.parameters())


def test_full_fine_tuning_trains_every_weight_and_generates(random_zoo, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    zoo = f"weights.tiny_zoo={random_zoo}"
    _ok(["preprocess", "--config", "tiny_v2", "--out", str(cache), "--device", "cpu", zoo, *SMALL])
    _ok(["train", "--config", "tiny_v2", "--run-dir", str(run), "--device", "cpu", "--tracker", "none", zoo, *SMALL,
                     f"v2.cache={cache}", "steps=2", "batch_size=2", "checkpoint_every=2", "lr_warmup=0", "lr=1e-3",
                     "v2.finetune=full", "target=online", "v2.temporal_lr_scale=0.5"])
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["recipe"]["v2"]["finetune"] == "full"
    from bench.config import load_config
    from bench.runs import load_run_student, load_teacher
    from bench.v2 import prepare_student, temporal_parameter_names

    cfg = load_config("tiny_v2", [zoo, *SMALL, "v2.finetune=full"])
    teacher = load_teacher(cfg)
    fresh = prepare_student(cfg, teacher.make_student(None))
    saved = load_file(str(run / "student" / "adapter.safetensors"))
    # Every weight of the UNet (and the motion-condition layers) is the run's, and both groups moved.
    assert set(saved) == {n for n, _ in fresh.named_parameters()}
    before = dict(fresh.named_parameters())
    temporal = temporal_parameter_names(fresh)
    moved = {n for n, v in saved.items() if not torch.equal(v, before[n].detach())}
    assert moved & temporal and moved - temporal
    # The checkpoint's optimiser: the temporal group at half the learning rate.
    opt = torch.load(next((run / "checkpoints").glob("step-*")) / "optimizer.pt", weights_only=False)
    lrs = {g["name"]: g["lr"] for g in opt["param_groups"]}
    assert lrs == {"other": 1e-3, "temporal": 5e-4}
    # The run's student loads (the whole UNet) and samples.
    _, unet, _ = load_run_student(run)
    assert all(torch.equal(p, saved[n]) for n, p in unet.named_parameters())
    out = tmp_path / "videos"
    _ok(["generate", "--run", str(run), "--suite", "tiny", "--limit", "1", "--videos-per-prompt", "1",
                     "--steps", "2", "--out", str(out), "--seed", "3"])
    assert len(list(out.glob("*.mp4"))) == 1


def test_the_shipped_accelerate_configs_load_as_sharded_configs():
    """bench/configs/accelerate/*.yaml are accelerate config files (its own loader) for FSDP2 and
    DeepSpeed ZeRO-2; they need GPUs, so only their contents are checked here."""
    from accelerate.commands.config.config_args import ClusterConfig

    from bench.config import CONFIG_DIR

    fsdp = ClusterConfig.from_yaml_file(str(CONFIG_DIR / "accelerate" / "fsdp.yaml"))
    assert str(fsdp.distributed_type).endswith("FSDP") and fsdp.fsdp_config["fsdp_version"] == 2
    # Every block class named for wrapping exists in the UNets the configs are for.
    from t2v_turbo_core.arch import videocrafter2
    import diffusers.models.unets.unet_3d_blocks as blocks3d

    for name in fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert hasattr(videocrafter2, name) or hasattr(blocks3d, name), name
    zero = ClusterConfig.from_yaml_file(str(CONFIG_DIR / "accelerate" / "deepspeed_zero2.yaml"))
    assert str(zero.distributed_type).endswith("DEEPSPEED") and zero.deepspeed_config["zero_stage"] == 2
    assert not fsdp.use_cpu and not zero.use_cpu
