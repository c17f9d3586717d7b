"""Time one consistency-distillation step of a full-size student on the CPU (random weights).

    .venv/bin/python benchmarks/full_size_step.py --model ms --no-rewards

Builds the real-size student (ModelScopeT2V's UNet3D: 1.41B parameters + w projection +
LoRA rank 32; or VideoCrafter2's UNet: 1.41B + rank 64 LoRA) with random weights, at a tiny
resolution (default 64x64, 8 frames), and runs one `ConsistencyDistiller` step (teacher
through the student with its adapters disabled, EMA target, Huber loss), backward and an AdamW
step. Prints wall time per phase and the peak resident memory. No weights are read or
downloaded; text embeddings are random tensors of the real shape [1, 77, 1024].

The student is built straight from the config (its random weights are "the teacher's"), not by
copying a separately built teacher, to keep the peak memory at one UNet (~5.7 GB in fp32).
Reward feedback (HPSv2.1 / ViCLIP / InternVideo2) is not wired here yet: pass --no-rewards.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch


def peak_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_ms_student(lora_rank: int) -> torch.nn.Module:
    from diffusers import UNet3DConditionModel

    from t2v_turbo_core.lora import LoraSettings, add_lora
    from t2v_turbo_core.teachers import GUIDANCE_EMBEDDING_DIM

    # diffusers' default UNet3DConditionModel() is text-to-video-ms-1.7b's unet/config.json.
    unet = UNet3DConditionModel(time_cond_proj_dim=GUIDANCE_EMBEDDING_DIM)
    with torch.no_grad():
        unet.time_embedding.cond_proj.weight.zero_()
    return add_lora(unet, LoraSettings(rank=lora_rank))


def build_vc2_student(lora_rank: int) -> torch.nn.Module:
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig
    from t2v_turbo_core.lora import LoraSettings, add_lora
    from t2v_turbo_core.teachers import GUIDANCE_EMBEDDING_DIM

    unet = VideoCrafter2UNet(VideoCrafter2UNetConfig(time_cond_proj_dim=GUIDANCE_EMBEDDING_DIM))
    with torch.no_grad():
        unet.cond_proj.weight.zero_()
    return add_lora(unet, LoraSettings(rank=lora_rank))


MODELS = {
    # name: (builder, default LoRA rank, text tokens x width, extra UNet inputs)
    "ms": (build_ms_student, 32, (77, 1024), {}),
    "vc2": (build_vc2_student, 64, (77, 1024), {"fps": 16}),
}


def time_cd_step(
    model: str = "ms", height: int = 64, width: int = 64, frames: int = 8, lora_rank: int | None = None, seed: int = 0
) -> dict:
    """Build the full-size random-weight student of `model` and time one CD step (no rewards).

    Returns wall times in seconds, parameter counts, the step's loss and the peak RSS in GiB.
    """
    from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
    from t2v_turbo_core.lora import trainable_parameters
    from t2v_turbo_core.schedule import NoiseSchedule

    builder, default_rank, (tokens, width_text), unet_kwargs = MODELS[model]
    rank = lora_rank or default_rank
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    student = builder(rank).train()
    result: dict = {"model": model, "lora_rank": rank, "video": [frames, height, width], "threads": torch.get_num_threads()}
    result["build_s"] = time.perf_counter() - t0
    params = trainable_parameters(student)
    result["parameters"] = sum(p.numel() for p in student.parameters())
    result["trainable_parameters"] = sum(p.numel() for p in params.values())
    result["peak_rss_gib_after_build"] = peak_rss_gib()

    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, frames, height // 8, width // 8, generator=g)
    text = torch.randn(1, tokens, width_text, generator=g)
    uncond = torch.randn(1, tokens, width_text, generator=g)
    distiller = ConsistencyDistiller(
        student, NoiseSchedule.scaled_linear(), uncond, DistillationConfig(beta_img=0.0, beta_vid=0.0), unet_kwargs=unet_kwargs
    )
    optimizer = torch.optim.AdamW(list(params.values()), lr=1e-5)

    t0 = time.perf_counter()
    out = distiller.step(latents, text, generator=g)
    result["forward_s"] = time.perf_counter() - t0  # teacher CFG pass + target + student forward
    t0 = time.perf_counter()
    out.loss.backward()
    result["backward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    distiller.update_target()
    result["update_s"] = time.perf_counter() - t0  # clip + AdamW + EMA
    result["step_s"] = result["forward_s"] + result["backward_s"] + result["update_s"]
    result["loss_cd"] = float(out.loss_cd)
    result["t"] = out.start_timesteps.tolist()
    result["w"] = [float(x) for x in out.guidance_scale]
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="ms")
    parser.add_argument("--no-rewards", action="store_true", help="CD loss only (required for now)")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=None, help="default: the model's public recipe")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.no_rewards:
        parser.error("reward models are not wired into this benchmark yet; run with --no-rewards")
    if args.threads:
        torch.set_num_threads(args.threads)
    r = time_cd_step(args.model, args.height, args.width, args.frames, args.lora_rank, args.seed)
    print(f"model={r['model']} lora_rank={r['lora_rank']} video={'x'.join(map(str, r['video']))} threads={r['threads']}")
    print(
        f"built student in {r['build_s']:.1f} s: {r['parameters']:,} parameters, {r['trainable_parameters']:,} trainable; "
        f"peak RSS {r['peak_rss_gib_after_build']:.2f} GiB"
    )
    print(
        f"one CD step: {r['step_s']:.1f} s (teacher CFG + target + student forward {r['forward_s']:.1f} s, "
        f"backward {r['backward_s']:.1f} s, clip + AdamW + EMA {r['update_s']:.1f} s); loss_cd={r['loss_cd']:.4g} "
        f"t={r['t']} w={[round(x, 2) for x in r['w']]}"
    )
    print(f"peak RSS {r['peak_rss_gib']:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
