"""Loading the shipped tiny-world zoo: the embedded default of every verb.

The zoo lives inside the package (`bench/tinyworld/zoo/`, fp16 safetensors + `zoo.json`);
`BENCH_TINY_ZOO` points elsewhere (e.g. a zoo rebuilt with `bench zoo build --zoo-dir`).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.tinyworld import models as M
from bench.tinyworld.world import FPS, FRAMES, SIZE

SHIPPED_ZOO = Path(__file__).resolve().parent / "zoo"
# The teacher's usual CFG scale for the 50-step baseline (as VideoCrafter2's 7.5).
TINY_CFG_SCALE = 7.5


class ZooError(BenchError, FileNotFoundError):
    """A missing or unreadable tiny-world zoo file (exit 2)."""


def zoo_dir(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("BENCH_TINY_ZOO") or SHIPPED_ZOO).resolve()


def manifest(path: str | Path | None = None) -> dict:
    d = zoo_dir(path)
    f = d / "zoo.json"
    if not f.is_file():
        raise ZooError(f"tiny-world zoo manifest not found: {f} (build it with `bench zoo build`)")
    try:
        return json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ZooError(f"tiny-world zoo manifest is not valid JSON: {f} ({err}); rebuild it with `bench zoo build`") from None


def _require(d: Path, files: list[str]) -> None:
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise ZooError(
            "tiny-world zoo is incomplete: missing " + ", ".join(str(d / f) for f in missing)
            + " (build it with `bench zoo build`)"
        )


def load_tiny_teacher(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The tiny text-to-video teacher as a `TextToVideoModel` (UNet3D, VAE, CLIP text encoder)."""
    from t2v_turbo_core.lora import LoraSettings
    from t2v_turbo_core.models import TextToVideoModel, TransformersTextEncoder, VideoVAE
    from t2v_turbo_core.schedule import NoiseSchedule
    from t2v_turbo_core.student import student_from_diffusers_unet

    d = zoo_dir(path)
    _require(d, ["zoo.json", "vae.safetensors", "text_encoder.safetensors", "teacher_unet.safetensors", "clip_tokenizer/tokenizer.json"])
    info = manifest(d)["stages"]
    tok = M.load_clip_tokenizer(d)
    vae = M.load_module(M.make_vae(), d / "vae.safetensors").to(device)
    text_model = M.load_module(M.make_text_encoder(tok), d / "text_encoder.safetensors").to(device)
    unet = M.load_module(M.make_teacher_unet(), d / "teacher_unet.safetensors").to(device)
    scale = float(info["vae"]["config"]["scaling_factor"])

    def make_student(lora: LoraSettings | None = LoraSettings(rank=16, dropout=0.0)):
        return student_from_diffusers_unet(unet, lora, extend=M.add_spatial_position_bias)

    return TextToVideoModel(
        name="tiny",
        unet=unet,
        vae=VideoVAE(vae, scaling_factor=scale),
        text_encoder=TransformersTextEncoder(tok, text_model, max_length=M.TEXT_CONTEXT),
        schedule=NoiseSchedule.scaled_linear(),
        num_frames=FRAMES,
        height=SIZE,
        width=SIZE,
        fps=FPS,
        make_student=make_student,
        cfg_scale=TINY_CFG_SCALE,
        latent_channels=4,
        vae_downsample=4,
    )


def load_tiny_rewards(path: str | Path | None = None, device: str | torch.device = "cpu") -> dict:
    """{"image": HPSv2.1's role, "viclip": ViCLIP's role, "internvid2": InternVideo2's role}."""
    d = zoo_dir(path)
    _require(d, ["rm_image.safetensors", "rm_viclip.safetensors", "rm_internvid2.safetensors"])
    tok = M.load_clip_tokenizer(d)
    bert = M.load_bert_tokenizer(d)
    return {
        "image": M.load_module(M.TinyImageTextReward(tok, len(tok)), d / "rm_image.safetensors").to(device),
        "viclip": M.load_module(M.TinyViCLIP(tok, len(tok)), d / "rm_viclip.safetensors").to(device),
        "internvid2": M.load_module(M.TinyInternVid2(bert, num_frames=4), d / "rm_internvid2.safetensors").to(device),
    }


def load_tiny_evaluators(path: str | Path | None = None, device: str | torch.device = "cpu") -> dict:
    """The tiny benchmark's evaluators (no weights shared with the reward models)."""
    d = zoo_dir(path)
    _require(d, ["eval_probe.safetensors", "eval_clip.safetensors", "eval_quality.safetensors", "eval_vt.safetensors"])
    tok = M.load_clip_tokenizer(d)
    return {
        "probe": M.load_module(M.FrameProbe(), d / "eval_probe.safetensors").to(device),
        "clip": M.load_module(M.ClipProbe(), d / "eval_clip.safetensors").to(device),
        "quality": M.load_module(M.QualityNet(), d / "eval_quality.safetensors").to(device),
        "vt": M.load_module(M.TinyViCLIP(tok, len(tok)), d / "eval_vt.safetensors").to(device),
    }


@lru_cache(maxsize=1)
def zoo_summary(path: str | None = None) -> dict:
    m = manifest(path)
    return {k: {kk: v for kk, v in e.items() if kk in ("steps", "seconds", "threads")} for k, e in m["stages"].items()}
