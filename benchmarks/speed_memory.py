"""Speed and memory of T2V-Turbo's two claims, measured side by side in one run.

1. Sampling speed: the student's n-step consistency sampler (1, 2, 4, 8 steps, no CFG) vs
   the teacher's 50-step DDIM with CFG, on the same prompts, seeds and machine, at 1, 4, 16
   and 32 videos per call: NFE, seconds per video sampling-only and end to end (text encoding
   + sampling + VAE decoding, as `bench generate` times them), the cost per NFE, and the
   speedup as a fraction of its NFE limit (teacher NFE / student NFE). NFE counts network
   evaluations per video: CFG's conditional and unconditional predictions are 2 NFE per step
   whether they run in one call of 2B videos or in two calls of B (`cfg_in_one_call`). The
   student samples as generation runs it (`prepare_for_sampling`: adapter merged, eval mode).
   The cost per NFE comes from interleaved runs of equal NFE (`sampling_speed`), and the
   50-step teacher's seconds from its per-step cost; one real 50-step run is recorded beside.
   A per-call profile beside it shows where the cost per NFE goes (one vs two CFG calls, an
   unmerged adapter, one merged per call as training's target pass runs it, train-mode
   dropout, diffusers' per-call dtype walk, the temporal convs on Conv3d's own kernel).
2. Reward-step memory: the reward gradient through the single-step prediction (T2V-Turbo)
   vs through an n-step sampling chain (what it avoids), for n = 1, 2, 4, 8: bytes that
   autograd keeps for backward (exact and device-independent) and, on CUDA, peak memory.
3. Training-step cost: one whole distillation step as `bench train` runs it (batch, text
   encoding, Algorithm 1's step, backward, optimizer, target update) for VCM and for
   T2V-Turbo (image + video reward), each with the LoRA layers merged per call (what training
   runs) and with peft's layer forward, and merged with the temporal convs on Conv3d's own
   kernel instead of as 2-D convolutions, interleaved step by step, at several batch sizes:
   seconds per step and per sample, what the reward feedback costs as a ratio to VCM, and
   what the merged forward and the 2-D temporal convs each gain.
4. `torch.compile` (only with `--sections compile`): the teacher's UNet compiled by inductor at
   1, 2 and 32 videos per call, the seconds each shape takes to compile, and its calls against
   eager ones, interleaved.

Default: the shipped tiny-world zoo on the CPU, one thread (as `bench ablate` runs its jobs:
with other processes on the cores, OpenMP's 2 threads spin-wait and a call can get many
times slower). Everything compared runs interleaved in one process, so that the machine's
load weighs on both sides alike; ratios are the result, absolute seconds depend on the
machine and its load, which the results file records (load average before and after).

    .venv/bin/python benchmarks/speed_memory.py [--zoo DIR] [--device cpu|cuda] [--threads 1]
        [--sections sampling,memory,train_step] [--out benchmarks/results/speed_memory.json]
    .venv/bin/python benchmarks/speed_memory.py --sections compile --out benchmarks/results/compile_probe.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path

import torch

from t2v_turbo_core.memory import saved_tensor_bytes
from t2v_turbo_core.safe_io import atomic_write_json

BATCHES = (1, 4, 16, 32)
STUDENT_STEPS = (1, 2, 4, 8)
TEACHER_STEPS = 50


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def call_profile(teacher, student_lora, student, prompts, device, batches=BATCHES, repeats: int = 7) -> list[dict]:
    """One UNet call, interleaved, per batch size: where the student's cost per NFE goes."""
    from t2v_turbo_core.models import cached_dtype
    from t2v_turbo_core.schedule import guidance_scale_embedding

    rows = []
    uncond1 = teacher.text_encoder([""]).to(device)
    for b in batches:
        text = teacher.text_encoder(prompts[:b]).to(device)
        uncond = uncond1.expand(b, *text.shape[1:])
        z = torch.randn(teacher.latent_shape(b), generator=torch.Generator().manual_seed(b)).to(device)
        t = torch.full((b,), 500, device=device)
        w = guidance_scale_embedding(torch.full((b,), 7.5)).to(device)
        z2, t2, c2 = torch.cat([z, z]), torch.cat([t, t]), torch.cat([text, uncond])
        unet = teacher.unet
        calls = {
            # name: (callable, NFE per video it computes)
            "teacher CFG, one call of 2B": (lambda: unet(z2, t2, encoder_hidden_states=c2), 2),
            "teacher CFG, two calls of B": (lambda: (unet(z, t, encoder_hidden_states=text), unet(z, t, encoder_hidden_states=uncond)), 2),
            "student merged, eval (as sampled)": (lambda: student(z, t, encoder_hidden_states=text, timestep_cond=w), 1),
            "student unmerged LoRA, eval": (lambda: student_lora.eval()(z, t, encoder_hidden_states=text, timestep_cond=w), 1),
            "student LoRA merged per call, eval (training's target)": (lambda: _merged_per_call(student_lora, z, t, text, w), 1),
            "student unmerged LoRA, train mode (old benchmark)": (lambda: student_lora.train()(z, t, encoder_hidden_states=text, timestep_cond=w), 1),
            "student merged, eval, dtype cached": (lambda: _cached(student, z, t, text, w, cached_dtype), 1),
            "teacher CFG, one call of 2B, temporal convs as Conv3d": (lambda: _conv3d(unet, z2, t2, c2, None), 2),
            "student merged, eval, temporal convs as Conv3d": (lambda: _conv3d(student, z, t, text, w), 1),
        }
        times = {k: [] for k in calls}
        with torch.no_grad():
            for fn, _ in calls.values():
                fn()
            for _ in range(repeats):
                for k, (fn, _) in calls.items():
                    _sync(device)
                    t0 = time.perf_counter()
                    fn()
                    _sync(device)
                    times[k].append(time.perf_counter() - t0)
        student_lora.eval()
        for k, (fn, nfe) in calls.items():
            ms = _median_ms(times[k])
            rows.append({"batch": b, "call": k, "ms_per_call": ms, "ms_per_nfe_per_video": ms / (nfe * b)})
    for m, name in ((teacher.unet, "teacher"), (student, "student merged"), (student_lora, "student unmerged LoRA")):
        t0 = time.perf_counter()
        for _ in range(10):
            m.dtype
        rows.append({"batch": None, "call": f"diffusers dtype walk: {name} ({sum(1 for _ in m.modules())} modules)",
                     "ms_per_call": (time.perf_counter() - t0) / 10 * 1e3, "ms_per_nfe_per_video": None})
    return rows


def _merged_per_call(student_lora, z, t, text, w):
    from t2v_turbo_core.lora import merged_lora_forward

    with merged_lora_forward(student_lora.eval()):
        return student_lora(z, t, encoder_hidden_states=text, timestep_cond=w)


def _conv3d(unet, z, t, text, w):
    with temporal_conv_kernel("3d"):
        return unet(z, t, encoder_hidden_states=text, timestep_cond=w)


def _cached(student, z, t, text, w, cached_dtype):
    with cached_dtype(student):
        return student(z, t, encoder_hidden_states=text, timestep_cond=w)


def sampling_speed(teacher, student, prompts, device, batches=BATCHES, repeats: int = 5) -> list[dict]:
    """The samplers side by side, per batch size: sampling-only and end to end (text encoding +
    sampling + one VAE decode per video, as `bench generate` times them).

    On a loaded machine a 50-step teacher run (minutes) and a 4-step student run (seconds) do
    not see the same load, so the cost per NFE is measured with runs of equal NFE, interleaved
    `repeats` times: the teacher's sampler with 2 DDIM steps (4 NFE: the very loop of the 50-step
    one, cut short) against the students' 1 / 2 / 4 / 8 steps; the 50-step teacher's seconds
    are then 25x its 2-step loop. One real 50-step run per batch size is recorded beside it.
    """
    from t2v_turbo_core.sampling import cfg_in_one_call, consistency_sample, teacher_ddim_sample

    uncond = teacher.text_encoder([""]).to(device)
    probe_steps = 2

    def run(b: int, sampler: str, n: int) -> tuple[float, float, float, int]:
        """(text encoding, sampling, decoding) seconds per video, NFE per video."""
        _sync(device)
        t0 = time.perf_counter()
        text = teacher.text_encoder(prompts[:b]).to(device)
        shape = teacher.latent_shape(b)
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        _sync(device)
        t1 = time.perf_counter()
        if sampler == "teacher":
            out = teacher_ddim_sample(teacher.unet, text, uncond, shape, teacher.schedule, num_steps=n,
                                      guidance_scale=teacher.cfg_scale, generator=gens)
        else:
            out = consistency_sample(student, text, shape, teacher.schedule, num_steps=n, generator=gens)
        _sync(device)
        t2 = time.perf_counter()
        torch.cat([teacher.vae.decode(lat[None]) for lat in out.latents])
        _sync(device)
        t3 = time.perf_counter()
        return (t1 - t0) / b, (t2 - t1) / b, (t3 - t2) / b, out.nfe

    rows = []
    with torch.no_grad():
        for b in batches:
            run(b, "teacher", 1)  # warm-up (each kernel's first call at this shape)
            run(b, "student", 2)
            probes = [("teacher", probe_steps)] + [("student", n) for n in STUDENT_STEPS]
            samples = {k: [] for k in probes}
            for _ in range(repeats):
                for k in probes:
                    samples[k].append(run(b, *k))
            full = run(b, "teacher", TEACHER_STEPS)  # the real 50-step run, once

            def med(k, i):
                return statistics.median(x[i] for x in samples[k])

            overhead = statistics.median(x[0] + x[2] for k in probes for x in samples[k])  # text + decode per video
            t_step = med(("teacher", probe_steps), 1) / probe_steps
            t_nfe = 2 * probe_steps if teacher.cfg_scale > 1 else probe_steps
            teacher_nfe = full[3]
            teacher_row = {
                "batch": b, "sampler": "teacher DDIM + CFG", "steps": TEACHER_STEPS, "nfe": teacher_nfe,
                "cfg_calls": "one call of 2B" if cfg_in_one_call(b, device) else "two calls of B",
                "ms_per_nfe": med(("teacher", probe_steps), 1) / t_nfe * 1e3,
                "sampling_seconds_per_video": t_step * TEACHER_STEPS,
                "end_to_end_seconds_per_video": t_step * TEACHER_STEPS + overhead,
                "measured_50_step_sampling_seconds_per_video": full[1],
                "measured_50_step_end_to_end_seconds_per_video": full[0] + full[1] + full[2],
            }
            rows.append(teacher_row)
            for n in STUDENT_STEPS:
                k = ("student", n)
                nfe = samples[k][0][3]
                sampling = med(k, 1)
                row = {"batch": b, "sampler": "student consistency", "steps": n, "nfe": nfe, "ms_per_nfe": sampling / nfe * 1e3,
                       "sampling_seconds_per_video": sampling, "end_to_end_seconds_per_video": sampling + overhead}
                limit = teacher_nfe / nfe
                row["ms_per_nfe_vs_teacher"] = row["ms_per_nfe"] / teacher_row["ms_per_nfe"]
                row["nfe_limit"] = limit
                row["speedup_vs_teacher"] = teacher_row["sampling_seconds_per_video"] / sampling
                row["fraction_of_nfe_limit"] = row["speedup_vs_teacher"] / limit
                row["end_to_end_speedup_vs_teacher"] = teacher_row["end_to_end_seconds_per_video"] / row["end_to_end_seconds_per_video"]
                row["end_to_end_fraction_of_nfe_limit"] = row["end_to_end_speedup_vs_teacher"] / limit
                row["speedup_vs_measured_50_step_run"] = full[1] / sampling
                rows.append(row)
            teacher_row.update(ms_per_nfe_vs_teacher=1.0, nfe_limit=1.0, speedup_vs_teacher=1.0, fraction_of_nfe_limit=1.0,
                               end_to_end_speedup_vs_teacher=1.0, end_to_end_fraction_of_nfe_limit=1.0)
            print(f"  sampling at {b} videos per call done", flush=True)
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

    from t2v_turbo_core.lora import merged_lora_forward

    def chain_as_trained(n):
        # The chain's student calls as the distiller makes its trained call (`lora_forward`), so
        # that both sides keep the same tensors per UNet call.
        if cfg.lora_forward != "merged":
            return chain(n)
        with merged_lora_forward(student):
            return chain(n)

    for n in (1, 2, 4, 8):
        saved, cuda_peak = peak(lambda n=n: chain_as_trained(n))
        rows.append({"reward_through": "n-step sampling chain", "sampling_steps": n, "saved_bytes": saved, "cuda_peak_bytes": cuda_peak})
    base = rows[0]["saved_bytes"]
    for r in rows:
        r["ratio_vs_t2v_turbo"] = r["saved_bytes"] / base
    return rows


def step_cost(teacher, rewards, device, batches=(1, 4, 8), repeats: int = 3) -> list[dict]:
    import dataclasses

    from bench.config import load_config
    from bench.train import TinyWorldBatches, make_distiller
    from t2v_turbo_core.lora import LORA_FORWARDS, trainable_parameters

    # (variant, how the LoRA layers compute: "merged" is what `bench train` runs, "adapter" is
    # peft's layer forward, what it ran before; how the temporal convs run: "2d" is what it runs,
    # "3d" is Conv3d's own kernel, what it ran before): the ratios are each change's gain.
    setups = {}
    for variant in ("vcm", "vcm+img+vid"):
        for form, conv in [(f, "2d") for f in LORA_FORWARDS] + [("merged", "3d")]:
            base = load_config("tiny")
            cfg = dataclasses.replace(base, variant=variant, rm_vid="viclip",
                                      distill=dataclasses.replace(base.distill, lora_forward=form))
            torch.manual_seed(0)
            student = teacher.make_student(cfg.lora_settings()).to(device)
            distiller = make_distiller(cfg, teacher, student, rewards["image"] if cfg.uses_image_reward else None,
                                       rewards["viclip"] if cfg.uses_video_reward else None)
            params = list(trainable_parameters(student).values())
            setups[(variant, form, conv)] = (cfg, distiller, params, torch.optim.AdamW(params, lr=cfg.lr),
                                             TinyWorldBatches(teacher, cfg.seed, 0))

    def one(key, step: int, b: int) -> float:
        cfg, distiller, params, optimizer, data = setups[key]
        _sync(device)
        t0 = time.perf_counter()
        with temporal_conv_kernel(key[2]):
            latents, prompts = data(step, b, device)
            out = distiller.step(latents, teacher.text_encoder(prompts), prompts, generator=torch.Generator().manual_seed(step))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            distiller.update_target()
        _sync(device)
        return time.perf_counter() - t0

    rows = []
    for b in batches:
        for key in setups:
            one(key, 0, b)  # warm-up
        times = {key: [] for key in setups}
        for r in range(repeats):  # interleaved: the machine's load weighs on all alike
            for key in setups:
                times[key].append(one(key, 1 + r, b))
        for (variant, form, conv), ts in times.items():
            sec = statistics.median(ts)
            rows.append({"variant": variant, "lora_forward": form, "temporal_conv": conv, "batch": b, "seconds_per_step": sec,
                         "seconds_per_sample": sec / b, "seconds_per_step_all": ts})
        print(f"  training steps at batch {b} done", flush=True)
    sec = {(r["variant"], r["lora_forward"], r["temporal_conv"], r["batch"]): r["seconds_per_step"] for r in rows}
    for r in rows:
        v, f, c, b = r["variant"], r["lora_forward"], r["temporal_conv"], r["batch"]
        r["ratio_vs_vcm"] = r["seconds_per_step"] / sec[("vcm", f, c, b)]
        # The merged forward's gain (same convs) and the 2-D temporal convs' gain (same forward).
        r["speedup_vs_adapter"] = sec[(v, "adapter", c, b)] / r["seconds_per_step"] if (v, "adapter", c, b) in sec else None
        r["speedup_vs_conv3d"] = sec[(v, f, "3d", b)] / r["seconds_per_step"] if (v, f, "3d", b) in sec else None
    return rows


@contextlib.contextmanager
def temporal_conv_kernel(kind: str):
    """"2d": the temporal convs as the models run them (`TemporalConv3d`); "3d": Conv3d's own
    kernel at every batch (the threshold below which they run as 2-D convolutions set to 0)."""
    from t2v_turbo_core import models

    saved = models.TEMPORAL_CONV_2D_BELOW_BATCH
    if kind == "3d":
        models.TEMPORAL_CONV_2D_BELOW_BATCH = 0
    try:
        yield
    finally:
        models.TEMPORAL_CONV_2D_BELOW_BATCH = saved


def compile_probe(teacher, prompts, device, batches=(1, 2, 32), repeats: int = 5) -> list[dict]:
    """`torch.compile` (inductor, static shapes) of the teacher's UNet, no grad, per batch size:
    the seconds it takes to compile (and make the first call), then eager and compiled calls
    interleaved. Each batch size compiles anew, into an empty inductor cache directory: the
    price a fresh machine pays per shape (a warm cache takes seconds)."""
    import shutil
    import tempfile

    import torch._dynamo

    rows = []
    unet = teacher.unet
    saved_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    for b in batches:
        torch._dynamo.reset()  # no graph of another shape, or of an earlier probe, reused
        cache = tempfile.mkdtemp(prefix="inductor-probe-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        text = teacher.text_encoder(prompts[:b]).to(device)
        z = torch.randn(teacher.latent_shape(b), generator=torch.Generator().manual_seed(b)).to(device)
        t = torch.full((b,), 500, device=device)
        with torch.no_grad():
            eager = unet(z, t, encoder_hidden_states=text, return_dict=False)[0]
            compiled_unet = torch.compile(unet, dynamic=False)
            _sync(device)
            t0 = time.perf_counter()
            compiled = compiled_unet(z, t, encoder_hidden_states=text, return_dict=False)[0]
            _sync(device)
            compile_seconds = time.perf_counter() - t0
            times = {"eager": [], "compiled": []}
            for _ in range(repeats):
                for k, m in (("eager", unet), ("compiled", compiled_unet)):
                    _sync(device)
                    t0 = time.perf_counter()
                    m(z, t, encoder_hidden_states=text, return_dict=False)
                    _sync(device)
                    times[k].append(time.perf_counter() - t0)
        e, c = _median_ms(times["eager"]), _median_ms(times["compiled"])
        rows.append({"batch": b, "compile_and_first_call_seconds": compile_seconds, "eager_ms_per_call": e,
                     "compiled_ms_per_call": c, "speedup": e / c, "max_abs_difference": float((compiled - eager).abs().max())})
        print(f"  compiled at {b} videos per call done", flush=True)
        del compiled_unet
        torch._dynamo.reset()
        shutil.rmtree(cache, ignore_errors=True)
    if saved_cache is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved_cache
    return rows


# "compile" is not run by default: it compiles the UNet once per batch size (minutes on a CPU).
SECTIONS = ("sampling", "memory", "train_step", "compile")
DEFAULT_SECTIONS = ("sampling", "memory", "train_step")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", default=None, help="tiny-world zoo (default: the shipped one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="videos per sampling call, comma-separated")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed runs of each sampler (median)")
    p.add_argument("--train-batches", default="1,4,8")
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"which of {', '.join(SECTIONS)} (default: {', '.join(DEFAULT_SECTIONS)})")
    p.add_argument("--load-note", default="", help="what else ran on the machine (recorded in the results)")
    p.add_argument("--out", default="benchmarks/results/speed_memory.json")
    args = p.parse_args(argv)
    sections = [x for x in args.sections.split(",") if x]
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        p.error(f"unknown section(s) {', '.join(bad)} (use {', '.join(SECTIONS)})")
    batches = tuple(int(x) for x in args.batches.split(","))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from bench.config import load_config
    from bench.tinyworld.suite import tiny_suite
    from bench.tinyworld.zoo import load_tiny_rewards, load_tiny_teacher

    load_before = os.getloadavg()
    t_start = time.time()
    teacher = load_tiny_teacher(args.zoo, device=device)
    cfg = load_config("tiny")
    rms = load_tiny_rewards(args.zoo, device=device)
    suite = [e.prompt for e in tiny_suite()]
    prompts = (suite * (1 + max(batches) // len(suite)))[: max(batches)]
    result = {"device": str(device), "threads": args.threads, "torch": torch.__version__}
    if "sampling" in sections:
        from t2v_turbo_core.sampling import prepare_for_sampling

        student_lora = teacher.make_student(cfg.lora_settings()).to(device)
        student = prepare_for_sampling(teacher.make_student(cfg.lora_settings()).to(device))
        print("per-call profile ...", flush=True)
        result["call_profile"] = call_profile(teacher, student_lora, student, prompts, device, batches)
        print("samplers ...", flush=True)
        result["speed"] = sampling_speed(teacher, student, prompts, device, batches, args.repeats)
    if "memory" in sections:
        student = teacher.make_student(cfg.lora_settings()).to(device)
        result["reward_memory"] = reward_memory(teacher, student, rms["image"], rms["viclip"], prompts[:4], device)
    if "train_step" in sections:
        print("training steps ...", flush=True)
        result["train_step"] = step_cost(teacher, rms, device, tuple(int(x) for x in args.train_batches.split(",")), args.train_repeats)
    if "compile" in sections:
        print("torch.compile ...", flush=True)
        result["compile"] = compile_probe(teacher, prompts, device)
    result["load"] = {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(), "cpus": os.cpu_count(),
                      "note": args.load_note, "wall_seconds": round(time.time() - t_start, 1)}
    out = Path(args.out)
    atomic_write_json(out, result, indent=2, allow_nan=True)
    print_tables(result)
    print(f"\nwritten to {out}")
    return 0


def print_tables(result: dict) -> None:
    if "call_profile" in result:
        print(f"\n{'one UNet call':<52}{'videos':>7}{'ms/call':>10}{'ms/NFE/video':>14}")
        for r in result["call_profile"]:
            per = "" if r["ms_per_nfe_per_video"] is None else f"{r['ms_per_nfe_per_video']:>14.2f}"
            print(f"{r['call']:<52}{'' if r['batch'] is None else r['batch']:>7}{r['ms_per_call']:>10.1f}{per}")
    if "speed" in result:
        print(f"\n{'sampler':<22}{'videos':>7}{'steps':>6}{'NFE':>5}{'s/video':>9}{'ms/NFE':>8}{'vs T':>6}"
              f"{'speedup':>9}{'limit':>7}{'frac':>6}{'e2e s/v':>9}{'e2e x':>7}{'frac':>6}{'vs 50-step run':>16}")
        for r in result["speed"]:
            check = r.get("speedup_vs_measured_50_step_run")
            check = f"{check:>15.1f}x" if check is not None else f"{r['measured_50_step_sampling_seconds_per_video']:>14.3f} s"
            print(f"{r['sampler']:<22}{r['batch']:>7}{r['steps']:>6}{r['nfe']:>5}{r['sampling_seconds_per_video']:>9.4f}"
                  f"{r['ms_per_nfe']:>8.2f}{r['ms_per_nfe_vs_teacher']:>6.2f}{r['speedup_vs_teacher']:>8.1f}x{r['nfe_limit']:>6.0f}x"
                  f"{r['fraction_of_nfe_limit']:>6.2f}{r['end_to_end_seconds_per_video']:>9.4f}{r['end_to_end_speedup_vs_teacher']:>6.1f}x"
                  f"{r['end_to_end_fraction_of_nfe_limit']:>6.2f}{check}")
    if "reward_memory" in result:
        print(f"\n{'reward gradient through':<38}{'steps':>6}{'saved MB':>10}{'ratio':>8}")
        for r in result["reward_memory"]:
            print(f"{r['reward_through']:<38}{r['sampling_steps']:>6}{r['saved_bytes'] / 2**20:>10.1f}{r['ratio_vs_t2v_turbo']:>8.2f}")
    if "compile" in result:
        print(f"\n{'teacher UNet, torch.compile':<30}{'videos':>7}{'compile s':>10}{'eager ms':>10}{'compiled ms':>12}{'speedup':>9}")
        for r in result["compile"]:
            print(f"{'':<30}{r['batch']:>7}{r['compile_and_first_call_seconds']:>10.1f}{r['eager_ms_per_call']:>10.1f}"
                  f"{r['compiled_ms_per_call']:>12.1f}{r['speedup']:>8.2f}x")
    if "train_step" in result:
        print(f"\n{'training step':<16}{'LoRA':>9}{'tconv':>6}{'batch':>6}{'s/step':>9}{'s/sample':>10}{'vs VCM':>8}"
              f"{'vs adapter':>12}{'vs conv3d':>11}")

        def x(v):
            return f"{v:>11.2f}x" if v is not None else f"{'':>12}"
        for r in result["train_step"]:
            print(f"{r['variant']:<16}{r.get('lora_forward', 'adapter'):>9}{r.get('temporal_conv', '3d'):>6}{r['batch']:>6}"
                  f"{r['seconds_per_step']:>9.3f}{r['seconds_per_sample']:>10.3f}{r['ratio_vs_vcm']:>7.2f}x"
                  f"{x(r.get('speedup_vs_adapter', 1.0))}{x(r.get('speedup_vs_conv3d'))}")


if __name__ == "__main__":
    raise SystemExit(main())
