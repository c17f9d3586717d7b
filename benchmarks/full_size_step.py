"""One T2V-Turbo training step of a real-architecture student on the CPU (random weights):
time, peak memory and parameter memory, with the teacher held as one UNet or as two.

    .venv/bin/python benchmarks/full_size_step.py --model vc2                 # one step, printed
    .venv/bin/python benchmarks/full_size_step.py --compare --width-scale 0.5 # -> benchmarks/results/

A step is the whole of Algorithm 1: the teacher's CFG solve, the target, the student, the VAE
decode with gradients, both reward models (ModelScope: HPSv2.1 + ViCLIP; VideoCrafter2:
HPSv2.1 + InternVideo2 on 8 frames), backward, clipping, AdamW on the LoRA.

Teacher memory (`--unet`):
* `two`: the teacher UNet plus a student built on its own copy of the teacher's weights, the
  way the students were built before (the teacher then run as the student with its adapters
  off, the separate teacher only held in memory);
* `one`: the LoRA student shares the teacher's tensors (`make_student` now): one UNet.
The two compute the same numbers; only memory differs. `--compare` runs both for MS and VC2,
each in a fresh process (so each peak is its own), checks that the losses are identical, and
writes `benchmarks/results/one_unet_memory.json`, with the full-size parameter accounting
(exact, from meta-device builds) beside the measured figures.

Networks are the real architectures; `--width-scale 0.5` halves every width of every network
(UNet channels, VAE channels, the reward towers) so that both versions fit a small machine:
parameters shrink about 4x, depths and layouts stay. Text embeddings are random tensors of the
real shape (the frozen text encoders play no part in the step). No weights are read.
"""

from __future__ import annotations

import argparse
import copy
import math
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from t2v_turbo_core.memory import reset_peak_rss, rss_gib, storage_bytes
from t2v_turbo_core.safe_io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "one_unet_memory.json"
GIB = 2**30








def _w(x: int, scale: float, multiple: int = 1) -> int:
    """x * scale rounded up to a multiple (head widths and group counts must divide it)."""
    return max(multiple, math.ceil(x * scale / multiple) * multiple)


# --- the networks, at full width (scale 1) or reduced ------------------------------------------


def ms_unet(scale: float):
    from diffusers import UNet3DConditionModel

    # text-to-video-ms-1.7b's unet/config.json (= diffusers' defaults): 1,411,233,860 parameters.
    return UNet3DConditionModel(
        sample_size=32, block_out_channels=tuple(_w(c, scale, 64) for c in (320, 640, 1280, 1280)), layers_per_block=2,
        cross_attention_dim=1024, attention_head_dim=64,
    )  # fmt: skip


def vc2_unet(scale: float):
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig

    return VideoCrafter2UNet(VideoCrafter2UNetConfig(model_channels=_w(320, scale, 64)))


def sd_vae(scale: float):
    from diffusers import AutoencoderKL

    from t2v_turbo_core.arch.ldm_autoencoder import SD_VAE_DDCONFIG, diffusers_vae_config

    dd = dict(SD_VAE_DDCONFIG, ch=_w(SD_VAE_DDCONFIG["ch"], scale, 32))
    return AutoencoderKL(**diffusers_vae_config(dd)).eval()


def hps_reward(scale: float):
    import open_clip

    from t2v_turbo_core.reward_models import HPSv21Reward, build_hps_model, hps_model_config

    cfg = hps_model_config()
    if scale != 1.0:
        v, t = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
        v["width"] = _w(v["width"], scale, v.get("head_width", 64))
        t["width"], t["heads"] = _w(t["width"], scale, 64), max(1, int(t["heads"] * scale))
        cfg = {**cfg, "embed_dim": _w(cfg["embed_dim"], scale, 64), "vision_cfg": v, "text_cfg": t}
    model = build_hps_model(cfg)
    model.set_grad_checkpointing(False)  # as `load_hpsv21` (and so `bench train`) has it
    return HPSv21Reward(model, open_clip.get_tokenizer("ViT-H-14")), model


def viclip_reward(scale: float):
    from t2v_turbo_core.arch.viclip import ViCLIP, ViCLIPConfig
    from t2v_turbo_core.reward_models import ViCLIPReward, viclip_tokenizer

    c = ViCLIPConfig()
    if scale != 1.0:
        c = ViCLIPConfig(vision_width=_w(c.vision_width, scale, 64), vision_heads=max(1, int(c.vision_heads * scale)),
                         embed_dim=_w(c.embed_dim, scale, 64), text_width=_w(c.text_width, scale, 64),
                         text_heads=max(1, int(c.text_heads * scale)))
    model = ViCLIP(c)
    model.set_grad_checkpointing(True)  # as `load_viclip` has it
    return ViCLIPReward(model, viclip_tokenizer()), model


class _FixedBertTokens:
    """Stands in for the BERT tokenizer (its vocabulary file is not shipped): fixed token ids."""

    def __call__(self, prompts, padding=None, truncation=None, max_length=40, return_tensors=None):
        ids = torch.full((len(prompts), max_length), 100, dtype=torch.long)
        ids[:, 0], ids[:, 8] = 101, 102
        mask = torch.zeros_like(ids)
        mask[:, :9] = 1
        return {"input_ids": ids, "attention_mask": mask}


def internvideo2_reward(scale: float, frames: int = 8):
    from t2v_turbo_core.arch.internvideo2 import InternVideo2Config, InternVideo2Retrieval
    from t2v_turbo_core.reward_models import InternVideo2Reward

    c = InternVideo2Config(num_frames=frames)
    if scale != 1.0:
        heads = max(1, int(c.heads * scale))
        c = InternVideo2Config(
            num_frames=frames, width=_w(c.width, scale, heads * 8), heads=heads, mlp_hidden=_w(c.mlp_hidden, scale, 64),
            clip_embed_dim=_w(c.clip_embed_dim, scale, 64), attn_pool_heads=heads, embed_dim=_w(c.embed_dim, scale, 64),
            text_width=_w(c.text_width, scale, 64), text_heads=max(1, int(c.text_heads * scale)),
            text_intermediate=_w(c.text_intermediate, scale, 64),
        )
    model = InternVideo2Retrieval(c)
    model.set_grad_checkpointing(True)  # as `load_internvideo2` has it
    return InternVideo2Reward(model, _FixedBertTokens()), model


MODELS = {
    # name: (UNet builder, LoRA rank, unet kwargs, video reward builder, (beta_img, beta_vid))
    "ms": (ms_unet, 32, {}, viclip_reward, (2.0, 3.0)),
    "vc2": (vc2_unet, 64, {"fps": 16}, internvideo2_reward, (1.0, 2.0)),
}


def make_student(model: str, teacher, rank: int, share: bool):
    """The LoRA student on the teacher's own tensors (share) or on a private copy of them."""
    from t2v_turbo_core.lora import LoraSettings
    from t2v_turbo_core.student import student_from_diffusers_unet
    from t2v_turbo_core.teachers import videocrafter2_student

    base = teacher if share else copy.deepcopy(teacher)
    settings = LoraSettings(rank=rank)
    if model == "ms":
        return student_from_diffusers_unet(base, settings, 256)
    return videocrafter2_student(base, settings, 256)


def run_step(model: str = "ms", unet: str = "one", width_scale: float = 1.0, height: int = 64, width: int = 64,
             frames: int = 8, rewards: bool = True, seed: int = 0) -> dict:
    """Build everything, run one step, return times (s), memory (GiB) and the losses."""
    from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
    from t2v_turbo_core.lora import trainable_parameters
    from t2v_turbo_core.models import VideoVAE
    from t2v_turbo_core.schedule import NoiseSchedule

    build_unet, rank, unet_kwargs, build_video_rm, (beta_img, beta_vid) = MODELS[model]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    teacher = build_unet(width_scale).eval().requires_grad_(False)
    torch.manual_seed(seed + 1)  # LoRA's A matrices: the same in both versions
    student = make_student(model, teacher, rank, share=(unet == "one")).train()
    torch.manual_seed(seed + 2)
    vae = sd_vae(width_scale)
    image_rm = video_rm = None
    reward_modules = []
    if rewards:
        image_rm, hps_model = hps_reward(width_scale)
        video_rm, video_model = build_video_rm(width_scale)
        reward_modules = [hps_model, video_model]
    build_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, frames, height // 8, width // 8, generator=g)
    text = torch.randn(1, 77, 1024, generator=g)
    uncond = torch.randn(1, 77, 1024, generator=g)
    config = DistillationConfig(beta_img=beta_img if rewards else 0.0, beta_vid=beta_vid if rewards else 0.0, target="online")
    distiller = ConsistencyDistiller(student, NoiseSchedule.scaled_linear(), uncond, config, vae=VideoVAE(vae, 0.18215),
                                     image_reward=image_rm, video_reward=video_rm, unet_kwargs=unet_kwargs)
    params = list(trainable_parameters(student).values())
    optimizer = torch.optim.AdamW(params, lr=1e-5)

    unet_modules = [teacher, student]
    result = {
        "model": model, "unet": unet, "width_scale": width_scale, "video": [frames, height, width], "rewards": rewards,
        "lora_rank": rank, "parameters": {
            "teacher_unet": sum(p.numel() for p in teacher.parameters()),
            "student_trainable": sum(p.numel() for p in params),
            "vae": sum(p.numel() for p in vae.parameters()),
            **({"image_reward": sum(p.numel() for p in reward_modules[0].parameters()),
                "video_reward": sum(p.numel() for p in reward_modules[1].parameters())} if rewards else {}),
        },
        "param_memory_gib": {
            "unets": round(storage_bytes(*unet_modules) / GIB, 3),
            "all": round(storage_bytes(*unet_modules, vae, *reward_modules) / GIB, 3),
        },
        "build_s": round(build_s, 1),
        "rss_before_step_gib": round(rss_gib("VmRSS"), 3),
        "peak_rss_build_gib": round(rss_gib("VmHWM"), 3),
    }
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    out = distiller.step(latents, text, prompts=["a panda playing guitar on times square"], generator=g)
    forward_s = time.perf_counter() - t0
    out.loss.backward()
    backward_s = time.perf_counter() - t0 - forward_s
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    step_s = time.perf_counter() - t0
    peak = rss_gib("VmHWM")
    result.update({
        "step_s": round(step_s, 1), "forward_s": round(forward_s, 1), "backward_s": round(backward_s, 1),
        "peak_rss_step_gib": round(peak, 3) if reset else None,
        "peak_rss_gib": round(max(peak, result["peak_rss_build_gib"]), 3),
        "loss": {k: float(v) for k, v in out.as_log().items()},
        "threads": torch.get_num_threads(),
    })  # fmt: skip
    return result


def full_size_parameter_accounting() -> dict:
    """Exact full-size parameter memory (fp32) of both versions, from meta-device builds."""
    from t2v_turbo_core.lora import LoraSettings, add_lora

    out = {}
    with torch.device("meta"):
        vae = sum(p.numel() for p in sd_vae(1.0).parameters())
        hps = sum(p.numel() for p in hps_reward(1.0)[1].parameters())
        rms = {"ms": sum(p.numel() for p in viclip_reward(1.0)[1].parameters()),
               "vc2": sum(p.numel() for p in internvideo2_reward(1.0)[1].parameters())}
        for model, (build, rank, _, _, _) in MODELS.items():
            unet = sum(p.numel() for p in build(1.0).parameters())
            if model == "ms":
                from diffusers import UNet3DConditionModel

                s = UNet3DConditionModel(sample_size=32, cross_attention_dim=1024, attention_head_dim=64, time_cond_proj_dim=256)
            else:
                from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig

                s = VideoCrafter2UNet(VideoCrafter2UNetConfig(time_cond_proj_dim=256))
            add_lora(s, LoraSettings(rank=rank))
            own = sum(p.numel() for n, p in s.named_parameters() if "lora_" in n or "cond_proj" in n)
            rest = vae + hps + rms[model]
            two_unets, one_unet = 2 * unet + own, unet + own
            out[model] = {
                "teacher_unet_params": unet, "student_own_params": own, "vae_and_rewards_params": rest,
                "unets_gib": {"two": round(two_unets * 4 / GIB, 2), "one": round(one_unet * 4 / GIB, 2),
                              "ratio": round(one_unet / two_unets, 3)},
                "all_gib": {"two": round((two_unets + rest) * 4 / GIB, 2), "one": round((one_unet + rest) * 4 / GIB, 2),
                            "ratio": round((one_unet + rest) / (two_unets + rest), 3)},
            }  # fmt: skip
    return out


def _summary(runs: dict) -> dict:
    summary = {}
    for model in ("ms", "vc2"):
        two, one = runs.get(f"{model}/two"), runs.get(f"{model}/one")
        if not (two and one):
            continue
        summary[model] = {
            "peak_rss_ratio": round(one["peak_rss_gib"] / two["peak_rss_gib"], 3),
            "param_memory_ratio_all": round(one["param_memory_gib"]["all"] / two["param_memory_gib"]["all"], 3),
            "param_memory_ratio_unets": round(one["param_memory_gib"]["unets"] / two["param_memory_gib"]["unets"], 3),
            "same_loss": one["loss"] == two["loss"],
        }
    return summary


def _write_results(result: dict) -> None:
    atomic_write_json(RESULTS, result, indent=2, allow_nan=True)


def compare(args) -> dict:
    """Both versions of each model, each in a fresh process; results are written after every run
    (and merged into an existing file measured at the same size), so a failed run loses nothing."""
    measured_at = {"width_scale": args.width_scale, "video": [args.frames, args.height, args.width], "batch": 1,
                   "dtype": "float32", "device": "cpu",
                   "note": "every network's widths x width_scale, rounded up to whole heads (parameters about "
                           "width_scale^2), depths and layouts as the real ones"}
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if result.get("measured_at") != measured_at:
        result = {}
    runs = result.get("runs", {})
    result.update({
        "what": "one T2V-Turbo step (teacher CFG solve, target, student, VAE decode with gradients, HPSv2.1 + video reward, "
                "backward, AdamW) with the teacher as two UNets (student on its own copy) vs one (student shares the teacher)",
        "measured_at": measured_at,
        "full_size_parameter_accounting_fp32": full_size_parameter_accounting(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    })  # fmt: skip
    for path in args.add_run:
        r = json.loads(Path(path).read_text().strip().splitlines()[-1])
        if r["width_scale"] != args.width_scale or r["video"] != [args.frames, args.height, args.width] or not r["rewards"]:
            raise SystemExit(f"{path}: measured at another size than this comparison")
        runs[f"{r['model']}/{r['unet']}"] = r
    for model in args.models:
        for unet in ("two", "one"):
            if f"{model}/{unet}" in runs:  # already measured at this size (merged or an earlier pass)
                continue
            cmd = [sys.executable, __file__, "--model", model, "--unet", unet, "--width-scale", str(args.width_scale),
                   "--height", str(args.height), "--width", str(args.width), "--frames", str(args.frames), "--json"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print("running", " ".join(cmd[1:]), flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode != 0:
                raise SystemExit(f"{model}/{unet} failed (exit {proc.returncode}; -9 is the out-of-memory killer):\n{proc.stderr[-3000:]}")
            runs[f"{model}/{unet}"] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  peak {r['peak_rss_gib']:.2f} GiB, params {r['param_memory_gib']['all']:.2f} GiB "
                  f"(UNets {r['param_memory_gib']['unets']:.2f}), step {r['step_s']} s, loss {r['loss']['loss']!r}", flush=True)
            result["runs"], result["summary"] = runs, _summary(runs)
            _write_results(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="ms")
    parser.add_argument("--unet", choices=("one", "two"), default="one", help="the teacher as one UNet (shared) or two")
    parser.add_argument("--no-rewards", action="store_true", help="CD loss only")
    parser.add_argument("--width-scale", type=float, default=1.0, help="every network's widths x this (1 = full size)")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--compare", action="store_true", help=f"both versions of each --models -> {RESULTS.relative_to(REPO)}")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS), help="with --compare")
    parser.add_argument("--add-run", type=Path, nargs="*", default=[], help="with --compare: JSON lines of runs made separately (--json)")
    args = parser.parse_args(argv)
    if not 0 < args.width_scale <= 1:
        parser.error("--width-scale must be in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        result = compare(args)
        print(json.dumps(result["summary"], indent=2))
        return 0 if all(s["same_loss"] for s in result["summary"].values()) else 1
    r = run_step(args.model, args.unet, args.width_scale, args.height, args.width, args.frames, not args.no_rewards, args.seed)
    if args.json:
        print(json.dumps(r))
    else:
        print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
