"""Random-weight stand-ins for tests: a zoo in the shipped layout, and a finished run.

Tests of the pipeline (generate, score, train, ablate) use these so that they run in
seconds, and do not depend on the shipped zoo's training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.tinyworld import models as M
from bench.tinyworld.build import export, Context, read_manifest, write_manifest


# `tiny_v2` small enough for CI: N = 20 grid points (k = 50), so a motion record inverts <= 20
# steps, and a 3-video cache in shards of 2.
SMALL_V2 = ["skip=50", "v2.records_per_shard=2", "v2.videos=3"]


def make_random_zoo(path: str | Path, seed: int = 0) -> Path:
    """Every zoo file, randomly initialised (deterministic from `seed`), plus zoo.json."""
    path = Path(path)
    ctx = Context(zoo_dir=path, work_dir=path / "_work")
    M.build_tokenizers(path)
    tok, bert = M.load_clip_tokenizer(path), M.load_bert_tokenizer(path)
    torch.manual_seed(seed)
    vae = M.make_vae()
    vae.register_to_config(scaling_factor=1.0)
    export(ctx, "vae", {"vae.safetensors": vae}, {"config": {**M.vae_config(), "scaling_factor": 1.0}, "random": True})
    export(ctx, "teacher", {"text_encoder.safetensors": M.make_text_encoder(tok), "teacher_unet.safetensors": M.make_teacher_unet()}, {"random": True})
    export(ctx, "rm_image", {"rm_image.safetensors": M.TinyImageTextReward(tok, len(tok))}, {"random": True})
    export(ctx, "rm_viclip", {"rm_viclip.safetensors": M.TinyViCLIP(tok, len(tok))}, {"random": True})
    export(ctx, "rm_internvid2", {"rm_internvid2.safetensors": M.TinyInternVid2(bert, num_frames=4)}, {"random": True})
    export(ctx, "eval_probe", {"eval_probe.safetensors": M.FrameProbe()}, {"random": True})
    export(ctx, "eval_clip", {"eval_clip.safetensors": M.ClipProbe()}, {"random": True})
    export(ctx, "eval_quality", {"eval_quality.safetensors": M.QualityNet()}, {"random": True})
    export(ctx, "eval_vt", {"eval_vt.safetensors": M.TinyViCLIP(tok, len(tok))}, {"random": True})
    manifest = read_manifest(path)
    manifest["random"] = True
    write_manifest(path, manifest)
    return path


def make_random_run(run_dir: str | Path, zoo: str | Path, variant: str = "vcm", seed: int = 0, lora_rank: int = 4) -> Path:
    """A finished tiny run directory whose student has random (non-zero) LoRA weights."""
    from bench.config import config_to_dict, load_config
    from bench.runs import run_record, student_adapter_path, write_json_atomic
    from bench.tinyworld.zoo import load_tiny_teacher
    from t2v_turbo_core.lora import save_student

    run_dir = Path(run_dir)
    cfg = load_config("tiny", [f"variant={variant}", f"lora_rank={lora_rank}", f"lora_alpha={lora_rank}", f"weights.tiny_zoo={zoo}"])
    teacher = load_tiny_teacher(zoo)
    student = teacher.make_student(cfg.lora_settings())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_" in n or "cond_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    save_student(student, student_adapter_path(run_dir))
    write_json_atomic(run_dir / "run.json", run_record("train", config_to_dict(cfg), {"seed": seed}, {"status": "finished", "random": True}))
    return run_dir
