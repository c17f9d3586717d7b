"""The reward models and evaluators of the tiny world (the judges): image and video rewards, the benchmark's probes, CLIP-style and quality evaluators."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.tinyworld import models as M
from bench.tinyworld.render import render
from bench.tinyworld.world import FRAMES, caption, training_scene
from bench.tinyworld.build.common import (
    Context, StageError, atomic_torch_save, batch_rng, export, train_loop, update_manifest,
)


RECON_POOL = 4000


def stage_recon_pool(ctx: Context, clips: int = RECON_POOL) -> None:
    """Clips passed through the VAE (encode, decode), with their specs.

    Half of every reward-model / evaluator batch comes from here, so that the judges are
    calibrated on decoded videos, which is what they see from the generators.
    """
    from bench.tinyworld.world import spec_to_dict

    path = ctx.work_dir / "recon_pool" / "pool.pt"
    t0 = time.time()
    if not path.is_file():
        vae = ctx.vae()
        rng = batch_rng(401, 0)
        specs = [training_scene(rng, ctx.held_out) for _ in range(clips)]
        out = []
        task = ctx.progress.add_task("recon_pool", total=clips, info="") if ctx.progress else None
        with torch.no_grad():
            for i in range(0, clips, 100):
                v = render(specs[i : i + 100])
                x = v.flatten(0, 1) * 2 - 1
                rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
                out.append((((rec.clamp(-1, 1) + 1) / 2) * 255).round().to(torch.uint8).reshape(v.shape))
                if task is not None:
                    ctx.progress.update(task, completed=i + 100)
        atomic_torch_save({"clips": torch.cat(out), "specs": [spec_to_dict(s) for s in specs]}, path)
    update_manifest(ctx.zoo_dir, "recon_pool", {"clips": clips, "seconds": round(time.time() - t0, 1), "files": []})


def _recon_pool(ctx: Context):
    if "pool" not in ctx.cache:
        from bench.tinyworld.world import spec_from_dict

        path = ctx.work_dir / "recon_pool" / "pool.pt"
        if not path.is_file():
            raise StageError(f"{path} missing; run the recon_pool stage first")
        data = torch.load(path, map_location="cpu", weights_only=True)
        ctx.cache["pool"] = (data["clips"], [spec_from_dict(d) for d in data["specs"]])
    return ctx.cache["pool"]


def judge_batch(ctx: Context, rng: np.random.Generator, n: int, recon_fraction: float = 0.5):
    """n clips [n, F, 3, H, W] in [0, 1] and their specs: fresh renders + VAE reconstructions."""
    pool_clips, pool_specs = _recon_pool(ctx)
    n_rec = int(round(n * recon_fraction))
    idx = rng.integers(0, len(pool_specs), n_rec)
    fresh = [training_scene(rng, ctx.held_out) for _ in range(n - n_rec)]
    clips = torch.cat([render(fresh), pool_clips[torch.from_numpy(idx)].float() / 255]) if n_rec else render(fresh)
    return clips, fresh + [pool_specs[i] for i in idx]


def contrastive_loss(video: torch.Tensor, text: torch.Tensor, text_neg: torch.Tensor, logit_scale: torch.Tensor,
                     captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE with one hard negative caption per item (one factor changed).

    Identical captions in a batch are not treated as negatives of each other.
    """
    n = video.shape[0]
    scale = logit_scale.exp().clamp(max=100)
    same = torch.tensor([[a == b for b in captions] for a in captions]) & ~torch.eye(n, dtype=torch.bool)
    logits_v = scale * video @ torch.cat([text, text_neg]).T
    logits_v[:, :n] = logits_v[:, :n].masked_fill(same, float("-inf"))
    logits_t = (scale * text @ video.T).masked_fill(same, float("-inf"))
    target = torch.arange(n)
    return (F.cross_entropy(logits_v, target) + F.cross_entropy(logits_t, target)) / 2


def _negatives(rng: np.random.Generator, specs) -> list[str]:
    from bench.tinyworld.world import perturb_spec

    return [caption(perturb_spec(rng, s)) for s in specs]


JUDGE_STEPS = {
    "rm_image": 2000,
    "rm_viclip": 2000,
    "rm_internvid2": 3000,
    "eval_probe": 5000,
    "eval_clip": 2000,
    "eval_quality": 1500,
    "eval_vt": 5000,
}


def stage_rm_image(ctx: Context, steps: int | None = None) -> None:
    """HPSv2.1's role: CLIP contrastive on (frame, caption) with hard negatives, plus
    preference pairs (a clean frame beats its degraded copy under the same caption), which is
    how HPS learned human preference for well-formed images."""
    from bench.tinyworld import degrade

    tok = ctx.clip_tokenizer()
    torch.manual_seed(11)
    rm = M.TinyImageTextReward(tok, len(tok))
    opt = torch.optim.AdamW(rm.parameters(), lr=5e-4, weight_decay=0.05)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(501, step)
        clips, specs = judge_batch(ctx, rng, 48)
        frames = clips[torch.arange(48), torch.from_numpy(rng.integers(0, FRAMES, 48))]
        caps = [caption(s) for s in specs]
        img = rm.encode_images(frames)
        txt = rm.encode_text(caps)
        neg = rm.encode_text(_negatives(rng, specs))
        loss_c = contrastive_loss(img, txt, neg, rm.clip.logit_scale, caps)
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        kind, sev = degrade.random_degradation(rng)
        bad = degrade.apply(kind, frames[:16, None], max(sev, 0.3), g)[:, 0]
        s_good = (img[:16] * txt[:16]).sum(-1)
        s_bad = (rm.encode_images(bad) * txt[:16]).sum(-1)
        loss_p = -F.logsigmoid(rm.clip.logit_scale.exp().clamp(max=100) * (s_good - s_bad)).mean()
        return {"loss": loss_c + loss_p, "contrastive": loss_c, "preference": loss_p}

    info = train_loop(ctx, "rm_image", {"rm": rm}, opt, step_fn, steps or JUDGE_STEPS["rm_image"], lr=5e-4, warmup=200)
    export(ctx, "rm_image", {"rm_image.safetensors": rm}, info)


def _video_text_stage(ctx: Context, name: str, model: nn.Module, seed: int, frames_fn, steps: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(seed, step)
        clips, specs = judge_batch(ctx, rng, 32)
        caps = [caption(s) for s in specs]
        vid = model.encode_video(frames_fn(clips, rng))
        txt = model.encode_text(caps)
        neg = model.encode_text(_negatives(rng, specs))
        return {"loss": contrastive_loss(vid, txt, neg, model.logit_scale, caps)}

    info = train_loop(ctx, name, {"model": model}, opt, step_fn, steps, lr=5e-4, warmup=200)
    export(ctx, name, {f"{name}.safetensors": model}, info)


def strided_frames(clips: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
    """T2V-Turbo's video-reward sampling: stride F // n, random start."""
    stride = clips.shape[1] // n
    start = int(rng.integers(0, stride))
    return clips[:, start::stride][:, :n]


def stage_rm_viclip(ctx: Context, steps: int | None = None) -> None:
    tok = ctx.clip_tokenizer()
    torch.manual_seed(12)
    _video_text_stage(ctx, "rm_viclip", M.TinyViCLIP(tok, len(tok)), 502, lambda c, r: c, steps or JUDGE_STEPS["rm_viclip"])


def stage_rm_internvid2(ctx: Context, steps: int | None = None) -> None:
    torch.manual_seed(13)
    model = M.TinyInternVid2(ctx.bert_tokenizer(), num_frames=4)
    _video_text_stage(ctx, "rm_internvid2", model, 503, lambda c, r: strided_frames(c, r, 4), steps or JUDGE_STEPS["rm_internvid2"])


def stage_eval_vt(ctx: Context, steps: int | None = None) -> None:
    """The evaluation video-text model (overall consistency): ViCLIP's architecture, as
    VBench reuses ViCLIP, but its own initialisation and data stream: no shared weights."""
    tok = ctx.clip_tokenizer()
    torch.manual_seed(14)
    _video_text_stage(ctx, "eval_vt", M.TinyViCLIP(tok, len(tok)), 504, lambda c, r: c, steps or JUDGE_STEPS["eval_vt"])


def _mild_augment(frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Robustness to imperfect generations: light blur or noise on some items.

    Accepts frames [N, 3, H, W] or clips [N, F, 3, H, W]."""
    from bench.tinyworld import degrade

    clips = frames if frames.ndim == 5 else frames[:, None]
    out = clips.clone()
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    k = clips.shape[0] // 4
    out[:k] = degrade.blur(clips[:k], float(rng.uniform(0, 0.25)))
    out[k : 2 * k] = degrade.noise(clips[k : 2 * k], float(rng.uniform(0, 0.1)), g)
    return out if frames.ndim == 5 else out[:, 0]


def stage_eval_probe(ctx: Context, steps: int | None = None) -> None:
    from bench.tinyworld.labels import IGNORE, frame_labels

    torch.manual_seed(21)
    probe = M.FrameProbe()
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=0.01)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(601, step)
        clips, specs = judge_batch(ctx, rng, 32)
        lab = frame_labels(specs)
        fi = torch.from_numpy(np.stack([rng.choice(FRAMES, 2, replace=False) for _ in range(32)]))
        rows = torch.arange(32)[:, None].expand(32, 2)
        frames = _mild_augment(clips[rows, fi].flatten(0, 1), rng)
        y = {k: v[rows, fi].flatten(0, 1) for k, v in lab.items()}
        out = probe(frames)
        l_pres = F.binary_cross_entropy_with_logits(out["presence"], y["presence"])
        l_col = F.cross_entropy(out["color"].flatten(0, 1), y["color"].flatten(), ignore_index=IGNORE)
        mask = y["presence"][..., None]
        l_pos = ((out["position"] - y["position"]).abs() * mask).sum() / mask.sum().clamp(min=1)
        l_scene = F.cross_entropy(out["scene"], y["scene"])
        l_style = F.cross_entropy(out["style"], y["style"])
        loss = l_pres + l_col + l_pos + l_scene + l_style
        return {"loss": loss, "presence": l_pres, "color": l_col, "position": l_pos, "scene": l_scene, "style": l_style}

    info = train_loop(ctx, "eval_probe", {"probe": probe}, opt, step_fn, steps or JUDGE_STEPS["eval_probe"], lr=3e-3, warmup=200)
    export(ctx, "eval_probe", {"eval_probe.safetensors": probe}, info)


def stage_eval_clip(ctx: Context, steps: int | None = None) -> None:
    from bench.tinyworld.labels import IGNORE, clip_labels

    torch.manual_seed(22)
    probe = M.ClipProbe()
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.01)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(602, step)
        clips, specs = judge_batch(ctx, rng, 32)
        lab = clip_labels(specs)
        out = probe(_mild_augment(clips, rng))
        l_act = F.cross_entropy(out["action"], lab["action"], ignore_index=IGNORE)
        l_cam = F.cross_entropy(out["camera"], lab["camera"])
        return {"loss": l_act + l_cam, "action": l_act, "camera": l_cam}

    info = train_loop(ctx, "eval_clip", {"probe": probe}, opt, step_fn, steps or JUDGE_STEPS["eval_clip"], lr=1e-3, warmup=200)
    export(ctx, "eval_clip", {"eval_clip.safetensors": probe}, info)


def stage_eval_quality(ctx: Context, steps: int | None = None) -> None:
    from bench.tinyworld import degrade

    torch.manual_seed(23)
    net = M.QualityNet()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(603, step)
        clips = render([training_scene(rng, ctx.held_out) for _ in range(24)])
        frames = clips[torch.arange(24), torch.from_numpy(rng.integers(0, FRAMES, 24))]
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        xs, ta, ti = [frames], [torch.ones(24)], [torch.ones(24)]
        for _ in range(4):
            kind, sev = degrade.random_degradation(rng)
            idx = torch.from_numpy(rng.choice(24, 12, replace=False))
            xs.append(degrade.apply(kind, frames[idx, None], sev, g)[:, 0])
            a, i = degrade.quality_targets(kind, sev)
            ta.append(torch.full((12,), a))
            ti.append(torch.full((12,), i))
        out = net(torch.cat(xs))
        loss = F.binary_cross_entropy(out["aesthetic"], torch.cat(ta)) + F.binary_cross_entropy(out["imaging"], torch.cat(ti))
        return {"loss": loss}

    info = train_loop(ctx, "eval_quality", {"net": net}, opt, step_fn, steps or JUDGE_STEPS["eval_quality"], lr=1e-3, warmup=100)
    export(ctx, "eval_quality", {"eval_quality.safetensors": net}, info)


JUDGE_STAGES: dict[str, Callable[[Context], None]] = {
    "recon_pool": stage_recon_pool,
    "rm_image": stage_rm_image,
    "rm_viclip": stage_rm_viclip,
    "rm_internvid2": stage_rm_internvid2,
    "eval_probe": stage_eval_probe,
    "eval_clip": stage_eval_clip,
    "eval_quality": stage_eval_quality,
    "eval_vt": stage_eval_vt,
}
