"""Generating (or finishing) a shard's videos into a folder: `generate_videos`, and generation.json."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.video_io import TMP_SUFFIX
from bench.generate.sampling import DEFAULT_TEACHER_PROTOCOL, GenerateError, SamplingSettings
from bench.generate.plan import (
    DEFAULT_VIDEOS_PER_PROMPT, GENERATION_NAME, SUITE_INFO_NAME, as_suite_items, draw_base_seed, plan_videos,
    shard_plan, video_seed,
)
from bench.generate.manifest import (
    _append_record, _write_json, check_out_dir, check_video_file, manifest_name, read_manifest, recorded_base_seed,
    repair_manifest, suite_info,
)


SEED_DERIVATION = "int.from_bytes(sha256(f'{base_seed}|{prompt}|{index}').digest()[:8], 'big') & (2**63 - 1)"
# Settings that must agree between the videos already in a folder and the ones a resume adds.
RESUME_KEYS = ("sampler", "steps", "timesteps", "guidance_scale", "base_seed", "teacher_protocol", "origin_steps")


@dataclass
class GenerationSummary:
    out_dir: Path
    shard: tuple[int, int]
    base_seed: int
    planned: int  # videos of this shard
    skipped: int  # already complete
    generated: int
    seconds: float
    manifest: Path
    settings: dict
    damaged: int = 0  # recorded videos found damaged on this run and made again

    def as_dict(self) -> dict:
        return {**self.__dict__, "out_dir": str(self.out_dir), "manifest": str(self.manifest)}


def _w_projection_dim(unet: Any) -> int:
    """Input size of the student's w projection (`cond_proj`); error if it has none."""
    from t2v_turbo_core.lora import w_projection_parameters

    weights = [p for n, p in w_projection_parameters(unet).items() if n.endswith("weight")]
    if not weights:
        raise GenerateError(
            "this student has no w projection (no `cond_proj` weights), so the embedded guidance "
            "scale cannot be fed to it; was it built by `TextToVideoModel.make_student`?"
        )
    return int(weights[0].shape[-1])


def one_video_at_a_time(unet: Any) -> Any:
    """The denoiser called on one video per forward, whatever the batch it is handed.

    Float kernels pick their algorithm by tensor shape, so a video denoised in a batch of 4
    differs from the same video alone in the last bits (~1e-6), which flips a few 8-bit pixel
    roundings. Calling per video makes every video bit-identical whatever the batch size,
    shard count or resume point, at the cost of batching's throughput.
    """
    import torch

    from t2v_turbo_core.models import predict_noise

    class OneVideoAtATime(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, z, t, encoder_hidden_states=None, timestep_cond=None, **kwargs):
            b = z.shape[0]

            def row(x: Any, i: int) -> Any:
                return x[i : i + 1] if torch.is_tensor(x) and x.ndim > 0 and x.shape[0] == b else x

            return torch.cat([
                predict_noise(self.inner, z[i : i + 1], row(t, i), row(encoder_hidden_states, i), row(timestep_cond, i),
                              **{k: row(v, i) for k, v in kwargs.items()})
                for i in range(b)
            ])

    return OneVideoAtATime(unet)


def generate_videos(
    bundle: Any,
    unet: Any,
    prompts_or_suite_items: Iterable[Any],
    out_dir: str | Path,
    sampler: str = "student",
    steps: int | None = None,
    guidance_scale: float | None = None,
    videos_per_prompt: int = DEFAULT_VIDEOS_PER_PROMPT,
    seed: int | None = None,
    batch_size: int = 4,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int, int], None] | None = None,
    model_label: str = "",
    spacing: str | None = None,
    flicker_oversample: bool = False,
    suite_source: dict | None = None,
    record: dict | None = None,
    batch_invariant: bool = False,
    teacher_protocol: str = DEFAULT_TEACHER_PROTOCOL,
    origin_steps: int | None = None,
    sampling: SamplingSettings | None = None,
) -> GenerationSummary:
    """Generate (or finish generating) this shard's videos into `out_dir`; returns a summary.

    bundle: the teacher's `TextToVideoModel` (VAE, text encoder, schedule, geometry, fps).
    unet: the merged student UNet (sampler="student") or the teacher's UNet ("teacher").
    steps: default 4 (student) / 50 (teacher). guidance_scale: the student's embedded w
    (default 7.5) or the teacher's CFG scale (default `bundle.cfg_scale`). spacing: LCM
    'strided' (default) / 'linspace' for students, DDIM 'trailing' (default) / 'leading'.
    seed: base seed; None reuses the folder's recorded one, else draws one (recorded).
    progress(done, total) is called at the start and after every batch.
    batch_invariant: denoise one video per UNet call (`one_video_at_a_time`): bit-identical
    videos whatever the batch size, shard count or resume point; batched calls (the default)
    reproduce a video exactly only with the same batch composition.
    record: extra fields for generation.json (the CLI passes the suite name and run).
    teacher_protocol (sampler="teacher"): "matched" (DDIM + CFG as above) or "native", the
    teacher's own sampler (`bundle.native_sampler`: VideoCrafter2's LVDM DDIM, eta 1, CFG 12,
    x0 rescaling, fps 28; ModelScope's DDIMScheduler from its scheduler_config.json, CFG 9);
    its steps and CFG scale are the defaults then, and `spacing` does not apply.
    origin_steps (student): L of the LCM origin grid (default 50; 200 for a v2 student).
    sampling: all of the above as one value (`SamplingSettings`, what the CLI passes); the loose
    keywords (sampler, steps, guidance_scale, spacing, teacher_protocol, origin_steps) are then
    left out, and are otherwise made into that value here.
    """
    import torch

    from bench.video_io import tensor_to_video, write_mp4
    from t2v_turbo_core.sampling import consistency_sample, planned_ddim_sample, teacher_ddim_sample

    if sampling is None:
        sampling = SamplingSettings.make(sampler, steps, guidance_scale, spacing, origin_steps, teacher_protocol)
    elif (steps, guidance_scale, spacing, origin_steps, teacher_protocol) != (None, None, None, None, DEFAULT_TEACHER_PROTOCOL):
        raise GenerateError("give the sampling settings as `sampling` or as keywords, not both")
    if batch_size < 1:
        raise GenerateError(f"--batch-size must be >= 1, got {batch_size}")
    items = as_suite_items(prompts_or_suite_items)
    plan = plan_videos(items, videos_per_prompt, flicker_oversample)
    mine = shard_plan(plan, shard)
    # The teacher's own CFG scale and the native protocol's grid come from its model.
    sampling, native, ddim_plan = sampling.for_model(bundle)
    sampler, steps, spacing, guidance_scale = sampling.sampler, sampling.steps, sampling.spacing, sampling.guidance_scale
    origin_steps, timesteps = sampling.origin_steps, list(sampling.timesteps)
    unet_kwargs = dict(getattr(bundle, "unet_kwargs", {}) or {})
    if native is not None and "fps" in native and "fps" in unet_kwargs:
        unet_kwargs["fps"] = int(native["fps"])  # the fps the teacher's script conditions on
    w_dim = _w_projection_dim(unet) if sampler == "student" else None

    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    if seed is None:
        seed = recorded_base_seed(out_dir)
    if seed is None:
        if shard[1] > 1:
            # Each process would draw its own; the launcher must agree on one (the CLI broadcasts).
            raise GenerateError("sharded generation needs an explicit base seed shared by all shards")
        seed = draw_base_seed()
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    recorded = sampling.as_record()  # the sampling settings as they are
    settings = {
        **{k: recorded[k] for k in ("sampler", "steps", "timesteps", "timestep_spacing", "guidance_scale", "cfg", "nfe")},
        "base_seed": seed,
        "model_label": model_label,
        "model": getattr(bundle, "name", None),
        "num_frames": bundle.num_frames,
        "height": bundle.height,
        "width": bundle.width,
        "fps": bundle.fps,
        "videos_per_prompt": videos_per_prompt,
        "flicker_oversample": flicker_oversample,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "batch_invariant": batch_invariant,
        "teacher_protocol": recorded["teacher_protocol"],
        "origin_steps": recorded["origin_steps"],
        "unet_kwargs": {k: v for k, v in unet_kwargs.items() if isinstance(v, (int, float, str))},
    }
    if native is not None:
        settings["native_sampler"] = {k: v for k, v in native.items() if k != "scheduler_config"}
        settings["native_sampler"]["eta"] = ddim_plan.eta
        if "scheduler_config" in native:
            settings["native_sampler"]["scheduler_config"] = native["scheduler_config"]
        settings["native_sampler"]["x0_rescaled"] = ddim_plan.x0_scale is not None
    denoiser = one_video_at_a_time(unet) if batch_invariant else unet

    done = read_manifest(out_dir)
    for rec in done.values():
        clash = {k: (rec.get(k), settings[k]) for k in RESUME_KEYS if k in rec and rec.get(k) != settings[k]}
        if clash:
            shown = "; ".join(f"{k}: folder has {a!r}, this run {b!r}" for k, (a, b) in clash.items())
            raise GenerateError(f"{out_dir} holds videos made with other settings ({shown}); use another --out or empty it")
    out_dir.mkdir(parents=True, exist_ok=True)

    # Leftover temp files of this shard's videos (a killed write); with one process, all of them.
    for v in mine:
        tmp = out_dir / (v.file[: -len(".mp4")] + TMP_SUFFIX)
        if tmp.exists():
            tmp.unlink()
    if shard[1] == 1:
        for p in out_dir.iterdir():
            if p.name.endswith(TMP_SUFFIX) and p.is_file():
                p.unlink()

    if shard[0] == 0:
        _write_json(out_dir / SUITE_INFO_NAME, suite_info(items, suite_source, videos_per_prompt, flicker_oversample))
        _write_generation_record(out_dir, settings, shard, len(plan), record)

    manifest = out_dir / manifest_name(shard)
    repair_manifest(manifest)  # a torn last line (a kill mid-append) is removed, not kept
    damaged = 0
    todo = []
    for v in mine:
        if v.file not in done or not (out_dir / v.file).is_file():
            todo.append(v)
        elif check_video_file(out_dir / v.file, done[v.file], bundle.num_frames) is not None:
            damaged += 1  # recorded, then cut or emptied: made again (same seed, same video)
            todo.append(v)
    skipped = len(mine) - len(todo)
    if progress:
        progress(skipped, len(mine))

    uncond = None
    if sampler == "teacher" and settings["cfg"]:
        uncond = bundle.text_encoder([""]).to(device=device, dtype=dtype)
    start = time.perf_counter()
    finished = skipped
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        seeds = [video_seed(seed, v.prompt, v.index) for v in batch]
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        t0 = time.perf_counter()
        if batch_invariant:
            text = torch.cat([bundle.text_encoder([v.prompt]) for v in batch])
        else:
            text = bundle.text_encoder([v.prompt for v in batch])
        text = text.to(device=device, dtype=dtype)
        shape = bundle.latent_shape(len(batch))
        t_sample = time.perf_counter()
        if sampler == "student":
            out = consistency_sample(
                denoiser, text, shape, bundle.schedule, num_steps=steps, guidance_scale=guidance_scale,
                origin_steps=origin_steps, spacing=spacing, generator=generators,
                guidance_embedding_dim=w_dim, unet_kwargs=unet_kwargs,
            )
        elif ddim_plan is not None:
            out = planned_ddim_sample(
                denoiser, text, uncond if uncond is not None else text[:1], shape, ddim_plan, guidance_scale,
                generator=generators, unet_kwargs=unet_kwargs,
            )
        else:
            out = teacher_ddim_sample(
                denoiser, text, uncond if uncond is not None else text[:1], shape, bundle.schedule, num_steps=steps,
                guidance_scale=guidance_scale, spacing=spacing, generator=generators, unet_kwargs=bundle.unet_kwargs,
            )
        sampling_per_video = (time.perf_counter() - t_sample) / len(batch)
        if list(out.timesteps) != timesteps or out.nfe != settings["nfe"]:
            raise GenerateError(f"sampler used timesteps {out.timesteps} / NFE {out.nfe}, planned {timesteps} / {settings['nfe']}")
        with torch.no_grad():
            vae_dtype = next(bundle.vae.vae.parameters()).dtype if hasattr(bundle.vae, "vae") else out.latents.dtype
            # One video per decode call: the VAE then always sees the same shape, so a video's
            # pixels do not depend on how many share its batch (kernels pick their algorithm
            # by shape; a batched decode differs in the last float bits). Same cost: the VAE is
            # per-frame anyway.
            pixels = torch.cat([bundle.vae.decode(lat[None].to(vae_dtype)) for lat in out.latents])  # [B, 3, F, H, W]
            pixels = (pixels.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4).cpu()  # [B, F, 3, H, W] in [0, 1]
        per_video = (time.perf_counter() - t0) / len(batch)
        for v, s, video in zip(batch, seeds, pixels):
            write_mp4(out_dir / v.file, tensor_to_video(video), fps=bundle.fps)
            _append_record(manifest, {
                "file": v.file,
                "bytes": (out_dir / v.file).stat().st_size,  # checked on rerun (check_video_file)
                "prompt": v.prompt,
                "index": v.index,
                "seed": s,
                "base_seed": seed,
                "sampler": sampler,
                "steps": steps,
                "timesteps": out.timesteps,
                "timestep_spacing": spacing,
                "guidance_scale": float(guidance_scale),
                "teacher_protocol": settings["teacher_protocol"],
                "origin_steps": settings["origin_steps"],
                "nfe": out.nfe,
                "seconds": round(per_video, 4),  # text encoding + sampling + VAE decoding
                "sampling_seconds": round(sampling_per_video, 4),  # the denoising loop alone
                "batch_size": len(batch),
                "batch_invariant": batch_invariant,
                "model_label": model_label,
                "device": str(device),
                "dtype": settings["dtype"],
                "shard": list(shard),
            })
        finished += len(batch)
        if progress:
            progress(finished, len(mine))
    return GenerationSummary(
        out_dir=out_dir, shard=tuple(shard), base_seed=seed, planned=len(mine), skipped=skipped,
        generated=len(todo), seconds=round(time.perf_counter() - start, 3), manifest=manifest, settings=settings,
        damaged=damaged,
    )


def _write_generation_record(out_dir: Path, settings: dict, shard: tuple[int, int], n_plan: int, extra: dict | None) -> None:
    """generation.json: the first session's record; later sessions (resumes) are listed in it."""
    from bench.runs import run_record

    path = out_dir / GENERATION_NAME
    session = {"command": sys.argv, "shard_count": shard[1], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
    rec = run_record(
        "generate", settings,
        {"base_seed": settings["base_seed"], "per_video": SEED_DERIVATION},
        {"planned_videos": n_plan, "shard_count": shard[1], **(extra or {})},
    )
    if old is not None:
        rec["created"] = old.get("created", rec["created"])
        rec["command"] = old.get("command", rec["command"])
    rec["sessions"] = [*(old or {}).get("sessions", []), session]
    _write_json(path, rec)


