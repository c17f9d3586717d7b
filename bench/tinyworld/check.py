"""`bench zoo check`: the tiny world's quality gates, re-measured from the shipped zoo.

* VAE: reconstruction error on held-out clips.
* Reward models: top-1 caption retrieval on held-out clips (among the batch's captions, and
  against a one-factor hard negative).
* Evaluators: accuracy on held-out clean renders (`gates.evaluator_accuracy`).
* Teacher: 50-step DDIM + CFG samples on the benchmark's held-out prompts, checked by the
  evaluators (which never saw the teacher) against chance, for colour, class, motion and
  relation; a larger reading of shape alone (`teacher_shapes`: 120 videos, confusion
  matrix); and a contact sheet of samples to look at.
All clips come from numpy seeds [900+, i], disjoint from every training stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.tinyworld.render import contact_sheet, render
from bench.tinyworld.suite import held_out_prompts, spec_for_prompt, tiny_suite
from bench.tinyworld.world import ACTIONS, COLORS, FRAMES, RELATIONS, SHAPES, caption, perturb_spec, training_scene


def _heldout_clips(seed: int, n: int):
    rng = np.random.default_rng([seed, 0])
    held = held_out_prompts()
    specs = [training_scene(rng, held) for _ in range(n)]
    return render(specs), specs, rng


@torch.no_grad()
def vae_gate(teacher, n: int = 128) -> dict:
    clips, _, _ = _heldout_clips(901, n)
    x = clips.permute(0, 2, 1, 3, 4) * 2 - 1
    rec = teacher.vae.decode(teacher.vae.encode(x, sample=False))
    err = ((rec.clamp(-1, 1) + 1) / 2 - clips.permute(0, 2, 1, 3, 4)).abs()
    return {"held_out_clips": n, "mae": float(err.mean()), "psnr_db": float(-10 * torch.log10(((err**2).mean())))}


@torch.no_grad()
def reward_gate(rewards: dict, n: int = 96) -> dict:
    """Top-1 retrieval among the batch's distinct captions, and clip-vs-hard-negative accuracy."""
    from bench.tinyworld.build import strided_frames

    clips, specs, rng = _heldout_clips(902, n)
    caps = [caption(s) for s in specs]
    negs = [caption(perturb_spec(rng, s)) for s in specs]
    uniq = sorted(set(caps))
    target = torch.tensor([uniq.index(c) for c in caps])
    out = {}
    for name, model in rewards.items():
        if name == "image":
            frames = clips[:, FRAMES // 2]
            v = model.encode_images(frames)
        elif name == "internvid2":
            v = model.encode_video(strided_frames(clips, np.random.default_rng(0), model.num_frames))
        else:
            v = model.encode_video(clips)
        t = model.encode_text(uniq)
        t_neg = model.encode_text(negs)
        top1 = float(((v @ t.T).argmax(1) == target).float().mean())
        pos = (v * model.encode_text(caps)).sum(-1)
        hard = float((pos > (v * t_neg).sum(-1)).float().mean())
        out[name] = {"top1_retrieval": top1, "candidates": len(uniq), "beats_hard_negative": hard}
    return out


def _presence(probe_out, shape: str) -> torch.Tensor:
    return torch.sigmoid(probe_out["presence"][:, SHAPES.index(shape)]) > 0.5


def _detected(probe_out, shape: str) -> bool:
    """The shape is seen in most frames of the clip (the object_class reading)."""
    return bool(_presence(probe_out, shape).float().mean() > 0.5)


def _forced_choice(probe_out) -> str:
    """The shape whose mean presence logit over the clip is highest (chance 1 / 5)."""
    return SHAPES[int(probe_out["presence"].mean(0).argmax())]


@torch.no_grad()
def _teacher_samples(teacher, prompts: list[str], seed: int) -> torch.Tensor:
    """50-step DDIM + CFG samples at the teacher's scale, one seed per video: [N, F, 3, H, W]."""
    from t2v_turbo_core.sampling import teacher_ddim_sample

    gens = [torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(prompts))]
    videos = []
    for i in range(0, len(prompts), 16):
        text = teacher.text_encoder(prompts[i : i + 16])
        out = teacher_ddim_sample(teacher.unet, text, teacher.text_encoder([""]), teacher.latent_shape(len(text)),
                                  teacher.schedule, num_steps=50, guidance_scale=teacher.cfg_scale, generator=gens[i : i + 16])
        px = teacher.vae.decode(out.latents)
        videos.append(((px.clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4))
    return torch.cat(videos)


@torch.no_grad()
def teacher_gate(teacher, evaluators: dict, videos_per_prompt: int = 4, seed: int = 903, sheet: str | Path | None = None) -> dict:
    """Do 50-step CFG samples follow held-out prompts? Judged by the evaluators vs chance."""
    dims = ("color", "object_class", "human_action", "spatial_relationship")
    entries = [e for e in tiny_suite(list(dims))]
    prompts = [e.prompt for e in entries for _ in range(videos_per_prompt)]
    videos = _teacher_samples(teacher, prompts, seed)
    probe, clipnet = evaluators["probe"], evaluators["clip"]
    hits = {d: [] for d in dims}
    forced: list[float] = []
    for k, prompt in enumerate(prompts):
        e = entries[k // videos_per_prompt]
        aux = e.auxiliary_info
        frames = videos[k]
        po = probe(frames)
        dim = e.dimensions[0]
        if dim == "object_class":
            shape = aux["objects"][0]["shape"]
            hits[dim].append(float(_detected(po, shape)))
            forced.append(float(_forced_choice(po) == shape))
        elif dim == "color":
            shape, color = aux["objects"][0]["shape"], aux["objects"][0]["color"]
            pred = po["color"][:, SHAPES.index(shape)].argmax(-1)
            hits[dim].append(float((pred == COLORS.index(color)).float().mean() > 0.5))
        elif dim == "human_action":
            pred = clipnet(frames[None])["action"].argmax(-1).item()
            hits[dim].append(float(pred == ACTIONS.index(aux["action"])))
        elif dim == "spatial_relationship":
            a, b = (SHAPES.index(o["shape"]) for o in aux["objects"])
            pos = po["position"]
            dx, dy = (pos[:, a] - pos[:, b]).mean(0).tolist()
            rel = ("left of" if dx < 0 else "right of") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
            hits[dim].append(float(rel == aux["relation"]))
    chance = {"color": 1 / len(COLORS), "object_class": 1 / len(SHAPES), "human_action": 1 / len(ACTIONS), "spatial_relationship": 1 / len(RELATIONS)}
    result = {d: {"accuracy": float(np.mean(v)), "videos": len(v), "chance": chance[d]} for d, v in hits.items()}
    result["object_class"]["forced_choice_accuracy"] = float(np.mean(forced))
    if sheet is not None:
        pick = list(range(0, len(prompts), videos_per_prompt))[:16]
        contact_sheet(videos[pick], [prompts[i] for i in pick], path=str(sheet))
    return result


@torch.no_grad()
def teacher_shapes(teacher, evaluators: dict, repeats: int = 3, seed: int = 905) -> dict:
    """Which shape does the teacher draw when asked for each one? A larger sample than the
    object_class gate's five prompts: every "a <colour> <shape>" and "a <shape>" (some of these
    captions occur in training; this measures drawing, not generalisation), `repeats` seeds
    each. The frame probe reads the drawn shape two ways: detected (the named shape's presence
    above 0.5 in most frames, as the object_class gate) and forced choice (its mean presence
    logit is the highest of the five; chance 1/5). `confusion[named][read]` counts forced choices.
    """
    prompts, named = [], []
    for _ in range(repeats):
        for k, shape in enumerate(SHAPES):
            for p in [f"a {c} {shape}" for c in COLORS] + [f"a {shape}"] * 2:
                prompts.append(p)
                named.append(k)
    videos = _teacher_samples(teacher, prompts, seed)
    confusion = np.zeros((len(SHAPES), len(SHAPES)), dtype=int)
    detected = []
    for v, k in zip(videos, named):
        po = evaluators["probe"](v)
        confusion[k, SHAPES.index(_forced_choice(po))] += 1
        detected.append(float(_detected(po, SHAPES[k])))
    return {"videos": len(prompts), "shapes": list(SHAPES), "chance": 1 / len(SHAPES),
            "forced_choice_accuracy": float(np.trace(confusion) / confusion.sum()),
            "detected_accuracy": float(np.mean(detected)), "confusion": confusion.tolist()}


def real_clip_sheet(path: str | Path, n: int = 10) -> None:
    """Contact sheet of ground-truth renders of benchmark prompts (what the teacher should draw)."""
    rng = np.random.default_rng([904, 0])
    entries = tiny_suite()[:: max(1, len(tiny_suite()) // n)][:n]
    specs = [spec_for_prompt(e, rng) for e in entries]
    contact_sheet(render(specs), [e.prompt for e in entries], path=str(path))
