"""Speed and memory of T2V-Turbo's two claims, measured side by side in one run.

1. Sampling speed: the student's n-step consistency sampler (1, 2, 4, 8 steps, no CFG) vs
   the teacher's 50-step DDIM with CFG, on the same prompts, seeds and machine: NFE,
   seconds per video, and the speedup ratio (the paper's "10x / 25x faster").
2. Reward-step memory: the reward gradient through the single-step prediction (T2V-Turbo)
   vs through an n-step sampling chain (what it avoids), for n = 1, 2, 4, 8: bytes that
   autograd keeps for backward (exact and device-independent) and, on CUDA, peak memory.
3. Training-step cost: one whole distillation step as `bench train` runs it (batch, text
   encoding, Algorithm 1's step, backward, optimizer, target update) for VCM and for
   T2V-Turbo (image + video reward), at several batch sizes: seconds per step and per
   sample, and what the reward feedback costs as a ratio to the VCM step.

Default: the shipped tiny-world zoo on the CPU. Ratios are the result; absolute seconds
depend on the machine.

    .venv/bin/python benchmarks/speed_memory.py [--zoo DIR] [--device cpu|cuda] [--out benchmarks/results/speed_memory.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from t2v_turbo_core.memory import saved_tensor_bytes


def sampling_speed(teacher, student, prompts, device, repeats: int = 2) -> list[dict]:
    from t2v_turbo_core.sampling import consistency_sample, teacher_ddim_sample

    text = teacher.text_encoder(prompts).to(device)
    uncond = teacher.text_encoder([""]).to(device)
    shape = teacher.latent_shape(len(prompts))
    rows = []

    def timed(fn):
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / repeats / len(prompts), out

    sec, out = timed(lambda: teacher_ddim_sample(teacher.unet, text, uncond, shape, teacher.schedule, num_steps=50,
                                                 guidance_scale=teacher.cfg_scale, generator=torch.Generator().manual_seed(0)))
    rows.append({"sampler": "teacher DDIM + CFG", "steps": 50, "nfe": out.nfe, "seconds_per_video": sec})
    for n in (1, 2, 4, 8):
        sec, out = timed(lambda n=n: consistency_sample(student, text, shape, teacher.schedule, num_steps=n,
                                                        generator=torch.Generator().manual_seed(0)))
        rows.append({"sampler": "student consistency", "steps": n, "nfe": out.nfe, "seconds_per_video": sec})
    base = rows[0]["seconds_per_video"]
    for r in rows:
        r["speedup_vs_teacher"] = base / r["seconds_per_video"]
    return rows


def reward_memory(teacher, student, image_rm, video_rm, prompts, device) -> list[dict]:
    from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
    from t2v_turbo_core.schedule import boundary_scalings, guidance_scale_embedding, lcm_timesteps

    cfg = DistillationConfig(target="online", beta_img=1.0, beta_vid=1.0, image_reward_frames=4)
    distiller = ConsistencyDistiller(student, teacher.schedule, teacher.text_encoder([""]), cfg, vae=teacher.vae,
                                     image_reward=image_rm, video_reward=video_rm)
    text = teacher.text_encoder(prompts)
    b = len(prompts)
    latents = torch.randn(teacher.latent_shape(b), generator=torch.Generator().manual_seed(0)).to(device)
    rows = []

    def peak(fn):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        saved, out = saved_tensor_bytes(fn)
        out.backward()
        student.zero_grad(set_to_none=True)
        return saved, (torch.cuda.max_memory_allocated() if device.type == "cuda" else None)

    saved, cuda_peak = peak(lambda: distiller.step(latents, text, prompts, torch.Generator().manual_seed(1)).loss)
    rows.append({"reward_through": "single-step prediction (T2V-Turbo)", "sampling_steps": 1, "saved_bytes": saved, "cuda_peak_bytes": cuda_peak})

    def chain(n):
        sched = teacher.schedule
        w = guidance_scale_embedding(torch.full((b,), 7.5)).to(device)
        z = torch.randn(teacher.latent_shape(b), generator=torch.Generator().manual_seed(2)).to(device)
        ts = lcm_timesteps(n)
        for i, t in enumerate(ts):
            tb = torch.full((b,), t, device=device)
            eps = student(z, tb, encoder_hidden_states=text, timestep_cond=w).sample
            c_skip, c_out = boundary_scalings(torch.tensor(float(t)))
            den = c_skip * z + c_out * sched.pred_original_sample(eps, tb, z)
            z = sched.add_noise(den, torch.randn_like(den), torch.full((b,), ts[i + 1], device=device)) if i + 1 < n else den
        frames = teacher.vae.decode_frames(z, torch.arange(teacher.num_frames).expand(b, -1))
        loss = -image_rm(frames[:, :4].flatten(0, 1), [p for p in prompts for _ in range(4)]).mean()
        return loss - video_rm(frames[:, :: max(1, teacher.num_frames // video_rm.num_frames)][:, : video_rm.num_frames], prompts).mean()

    for n in (1, 2, 4, 8):
        saved, cuda_peak = peak(lambda n=n: chain(n))
        rows.append({"reward_through": "n-step sampling chain", "sampling_steps": n, "saved_bytes": saved, "cuda_peak_bytes": cuda_peak})
    base = rows[0]["saved_bytes"]
    for r in rows:
        r["ratio_vs_t2v_turbo"] = r["saved_bytes"] / base
    return rows


def step_cost(teacher, rewards, device, batches=(1, 4, 8), repeats: int = 3) -> list[dict]:
    import dataclasses

    from bench.config import load_config
    from bench.train import TinyWorldBatches, make_distiller
    from t2v_turbo_core.lora import trainable_parameters

    rows = []
    for variant in ("vcm", "vcm+img+vid"):
        cfg = dataclasses.replace(load_config("tiny"), variant=variant, rm_vid="viclip")
        torch.manual_seed(0)
        student = teacher.make_student(cfg.lora_settings()).to(device)
        distiller = make_distiller(cfg, teacher, student, rewards["image"] if cfg.uses_image_reward else None,
                                   rewards["viclip"] if cfg.uses_video_reward else None)
        params = list(trainable_parameters(student).values())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr)
        data = TinyWorldBatches(teacher, cfg.seed, 0)

        def one(step: int, b: int) -> None:
            latents, prompts = data(step, b, device)
            out = distiller.step(latents, teacher.text_encoder(prompts), prompts, generator=torch.Generator().manual_seed(step))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            distiller.update_target()

        for b in batches:
            one(0, b)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for r in range(repeats):
                one(1 + r, b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            sec = (time.perf_counter() - t0) / repeats
            rows.append({"variant": variant, "batch": b, "seconds_per_step": sec, "seconds_per_sample": sec / b})
    vcm = {r["batch"]: r["seconds_per_step"] for r in rows if r["variant"] == "vcm"}
    for r in rows:
        r["ratio_vs_vcm"] = r["seconds_per_step"] / vcm[r["batch"]]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default=None, help="tiny-world zoo (default: the shipped one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--videos", type=int, default=16, help="batch of prompts for the speed test")
    p.add_argument("--out", default="benchmarks/results/speed_memory.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from bench.config import load_config
    from bench.tinyworld.suite import tiny_suite
    from bench.tinyworld.zoo import load_tiny_rewards, load_tiny_teacher

    teacher = load_tiny_teacher(args.zoo, device=device)
    cfg = load_config("tiny")
    student = teacher.make_student(cfg.lora_settings()).to(device)
    rms = load_tiny_rewards(args.zoo, device=device)
    prompts = [e.prompt for e in tiny_suite()][: args.videos]
    with torch.no_grad():
        speed = sampling_speed(teacher, student, prompts, device)
    memory = reward_memory(teacher, student, rms["image"], rms["viclip"], prompts[:4], device)
    steps = step_cost(teacher, rms, device)
    result = {"device": str(device), "threads": args.threads, "torch": torch.__version__, "speed": speed, "reward_memory": memory,
              "train_step": steps}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'sampler':<24}{'steps':>6}{'NFE':>6}{'s/video':>10}{'speedup':>9}")
    for r in speed:
        print(f"{r['sampler']:<24}{r['steps']:>6}{r['nfe']:>6}{r['seconds_per_video']:>10.4f}{r['speedup_vs_teacher']:>8.1f}x")
    print(f"\n{'reward gradient through':<38}{'steps':>6}{'saved MB':>10}{'ratio':>8}")
    for r in memory:
        print(f"{r['reward_through']:<38}{r['sampling_steps']:>6}{r['saved_bytes'] / 2**20:>10.1f}{r['ratio_vs_t2v_turbo']:>8.2f}")
    print(f"\n{'training step':<16}{'batch':>6}{'s/step':>9}{'s/sample':>10}{'vs VCM':>8}")
    for r in steps:
        print(f"{r['variant']:<16}{r['batch']:>6}{r['seconds_per_step']:>9.3f}{r['seconds_per_sample']:>10.3f}{r['ratio_vs_vcm']:>7.2f}x")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
