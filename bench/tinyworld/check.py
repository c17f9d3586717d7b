"""`bench zoo check`: the tiny world's quality gates, re-measured from the shipped zoo.

* VAE: reconstruction error on held-out clips.
* Reward models: top-1 caption retrieval on held-out clips (among the batch's captions, and
  against a one-factor hard negative).
* Evaluators: accuracy on held-out clean renders (`gates.evaluator_accuracy`).
* Teacher: 50-step DDIM + CFG samples on the benchmark's held-out prompts, checked by the
  evaluators (which never saw the teacher) against chance, for colour, class, motion and
  relation (see `teacher_gate` for the relation's readings); a larger reading of shape alone
  (`teacher_shapes`: 120 videos, confusion matrix); what the teacher *knows* of shape apart from
  what it draws (`teacher_knows_shapes`: its own denoising error used as a classifier) and of
  placement (`teacher_knows_relations`: the same for the relation of a pair); and a contact
  sheet of samples to look at.
Every teacher reading carries a 95% Wilson interval and the exact one-sided binomial p-value
against chance (`above_chance`).
All clips come from numpy seeds [900+, i], disjoint from every training stream.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.tinyworld.render import contact_sheet, render
from bench.tinyworld.suite import held_out_prompts, spec_for_prompt, tiny_suite
from bench.tinyworld.world import (ACTIONS, COLORS, FRAMES, OPPOSITE_RELATION, RELATION_AXIS, RELATIONS, SCENES, SHAPES, SceneSpec, caption,
                                   perturb_spec, randomize_appearance, sample_object, sample_pair, training_scene)


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


def above_chance(hits, chance: float, z: float = 1.959964) -> dict:
    """An accuracy over `hits` (0/1 per video) set against chance.

    ci95: the Wilson score interval (it stays inside [0, 1] and behaves at small n, which the
    normal interval does not); p_above_chance: the exact one-sided binomial tail
    P(X >= hits | n, chance). Videos of one prompt are not independent draws (a prompt the
    teacher cannot draw fails on every seed), so both are optimistic when few prompts carry
    many seeds; the per-prompt numbers in the gate show how much one prompt weighs.
    """
    n, k = len(hits), int(round(sum(hits)))
    if n == 0:
        return {"accuracy": float("nan"), "videos": 0, "chance": chance, "ci95": [0.0, 1.0], "p_above_chance": 1.0,
                "times_chance": float("nan")}
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    p = sum(math.comb(n, i) * chance**i * (1 - chance) ** (n - i) for i in range(k, n + 1))
    return {"accuracy": phat, "videos": n, "chance": chance, "ci95": [max(0.0, centre - half), min(1.0, centre + half)],
            "p_above_chance": min(1.0, p), "times_chance": phat / chance}


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


TEACHER_DIMENSIONS = ("color", "object_class", "human_action", "spatial_relationship")


def _relation(dx: float, dy: float) -> str:
    """The relation of A to B from A's position minus B's (screen units, y down)."""
    return ("left of" if dx < 0 else "right of") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")


def _placement_by_colour(probe_out, colors: tuple[str, str]) -> str | None:
    """The relation of the object coloured colors[0] to the one coloured colors[1], whatever
    shapes were drawn: the two shapes the probe sees most (both `_detected`) are told apart by
    their colour, and the relation read from their positions. None when fewer than two objects
    are seen, so a teacher that draws one object of the pair, or both as one shape (one probe
    slot), scores a miss."""
    top = torch.sigmoid(probe_out["presence"]).mean(0).topk(2).indices.tolist()
    if not all(_detected(probe_out, SHAPES[i]) for i in top):
        return None
    p = probe_out["color"].softmax(-1).mean(0)  # [shape, colour]
    a, b = (COLORS.index(c) for c in colors)
    s1, s2 = top if p[top[0], a] + p[top[1], b] >= p[top[1], a] + p[top[0], b] else top[::-1]
    pos = probe_out["position"].mean(0)
    return _relation(*(pos[s1] - pos[s2]).tolist())


@torch.no_grad()
def teacher_gate(teacher, evaluators: dict, videos_per_prompt: int = 8, seed: int = 903, sheet: str | Path | None = None) -> dict:
    """Do 50-step CFG samples follow held-out prompts? Judged by the evaluators vs chance.

    Each dimension reports `above_chance` (accuracy, Wilson interval, binomial p) and the
    accuracy per prompt. Spatial relation is read as `score_tiny` reads it: both *named shapes*
    detected, as VBench requires, and their positions in the asked relation, axis and
    direction, so a shape drawn wrong fails the relation too. More readings of the same
    videos: `vbench_rule`, VBench's own rule (both detected, then only the axis: its
    `get_position_score` scores "left of" and "right of" alike; chance 1/2); `positions_only`,
    the named shapes' positions whether or not they were detected (the probe's position head
    then follows the nearest look-alike; this gate's reading before 2026-11-22), split into
    axis and direction; and `by_colour`, the two objects found by their named colours, which
    separates placement from the class reading (the prompts name two different colours) but
    needs two objects drawn.
    """
    dims = TEACHER_DIMENSIONS
    entries = tiny_suite(list(dims))
    prompts = [e.prompt for e in entries for _ in range(videos_per_prompt)]
    videos = _teacher_samples(teacher, prompts, seed)
    probe, clipnet = evaluators["probe"], evaluators["clip"]
    hits: dict[str, list[float]] = {d: [] for d in dims}
    per_prompt: dict[str, dict[str, list[float]]] = {d: {} for d in dims}
    forced: list[float] = []
    by_colour: list[float] = []
    positions_only: list[float] = []
    positions_axis: list[float] = []
    vbench_rule: list[float] = []
    two_seen: list[float] = []
    by_colour_prompt: dict[str, list[float]] = {}
    for k, prompt in enumerate(prompts):
        e = entries[k // videos_per_prompt]
        aux = e.auxiliary_info
        frames = videos[k]
        po = probe(frames)
        dim = e.dimensions[0]
        if dim == "object_class":
            shape = aux["objects"][0]["shape"]
            hit = float(_detected(po, shape))
            forced.append(float(_forced_choice(po) == shape))
        elif dim == "color":
            shape, color = aux["objects"][0]["shape"], aux["objects"][0]["color"]
            pred = po["color"][:, SHAPES.index(shape)].argmax(-1)
            hit = float((pred == COLORS.index(color)).float().mean() > 0.5)
        elif dim == "human_action":
            pred = clipnet(frames[None])["action"].argmax(-1).item()
            hit = float(pred == ACTIONS.index(aux["action"]))
        else:  # spatial_relationship
            pos = po["position"].mean(0)
            a, b = (SHAPES.index(o["shape"]) for o in aux["objects"])
            named_relation = _relation(*(pos[a] - pos[b]).tolist())
            placed_named = named_relation == aux["relation"]
            positions_only.append(float(placed_named))
            axis_named = RELATION_AXIS[named_relation] == RELATION_AXIS[aux["relation"]]
            positions_axis.append(float(axis_named))
            # VBench scores 0 unless both named objects are detected (so does score_tiny); its
            # rule then checks only the axis, this gate (and score_tiny) the direction too.
            both = all(_detected(po, o["shape"]) for o in aux["objects"])
            hit = float(both and placed_named)
            vbench_rule.append(float(both and axis_named))
            placement = _placement_by_colour(po, tuple(o["color"] for o in aux["objects"]))
            placed = float(placement == aux["relation"])
            two_seen.append(float(placement is not None))
            by_colour.append(placed)
            by_colour_prompt.setdefault(prompt, []).append(placed)
        hits[dim].append(hit)
        per_prompt[dim].setdefault(prompt, []).append(hit)
    chance = {"color": 1 / len(COLORS), "object_class": 1 / len(SHAPES), "human_action": 1 / len(ACTIONS), "spatial_relationship": 1 / len(RELATIONS)}
    result = {}
    for d, v in hits.items():
        result[d] = above_chance(v, chance[d])
        result[d]["per_prompt"] = {p: float(np.mean(h)) for p, h in per_prompt[d].items()}
    result["object_class"]["forced_choice"] = above_chance(forced, chance["object_class"])
    result["spatial_relationship"]["vbench_rule"] = above_chance(vbench_rule, 0.5)
    result["spatial_relationship"]["positions_only"] = above_chance(positions_only, chance["spatial_relationship"])
    # The same reading split into axis (chance 1/2) and, where the axis is right, direction (1/2).
    result["spatial_relationship"]["positions_only"]["axis"] = above_chance(positions_axis, 0.5)
    result["spatial_relationship"]["positions_only"]["direction_given_axis"] = above_chance(
        [p for p, ax in zip(positions_only, positions_axis) if ax], 0.5)
    result["spatial_relationship"]["by_colour"] = above_chance(by_colour, chance["spatial_relationship"])
    result["spatial_relationship"]["by_colour"]["per_prompt"] = {p: float(np.mean(h)) for p, h in by_colour_prompt.items()}
    # How often two objects were seen at all: a teacher that draws one object of a pair fails
    # this reading whatever it places.
    result["spatial_relationship"]["by_colour"]["two_objects_seen"] = float(np.mean(two_seen)) if two_seen else float("nan")
    result["videos_per_prompt"] = videos_per_prompt
    result["seed"] = seed
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
    right = []
    for v, k in zip(videos, named):
        po = evaluators["probe"](v)
        read = SHAPES.index(_forced_choice(po))
        confusion[k, read] += 1
        right.append(float(read == k))
        detected.append(float(_detected(po, SHAPES[k])))
    return {"videos": len(prompts), "shapes": list(SHAPES), "chance": 1 / len(SHAPES),
            "forced_choice_accuracy": float(np.trace(confusion) / confusion.sum()),
            "detected_accuracy": float(np.mean(detected)), "confusion": confusion.tolist(),
            "forced_choice": above_chance(right, 1 / len(SHAPES)), "detected": above_chance(detected, 1 / len(SHAPES))}


def diffusion_class_errors(predict_noise_fn, z0: torch.Tensor, candidates: torch.Tensor, schedule,
                           timesteps: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """The denoiser as a classifier (Li et al. 2023, "Your diffusion model is secretly a
    zero-shot classifier"): for each clean latent, its eps-prediction error under each candidate
    conditioning, with the same noise for every candidate. Returns [N, K, len(timesteps)].

    predict_noise_fn(z_t [K, ...], t [K], cond [K, ...]) -> eps [K, ...]; z0: [N, ...] clean
    latents; candidates: [N, K, ...] the K conditionings tried on each latent.
    """
    n, k = candidates.shape[:2]
    errors = torch.zeros(n, k, len(timesteps))
    for i in range(n):
        for j, t in enumerate(timesteps):
            noise = torch.randn(z0[i].shape, generator=generator).expand(k, *z0.shape[1:])
            t_batch = torch.full((k,), int(t), dtype=torch.long)
            z_t = schedule.add_noise(z0[i].expand_as(noise), noise, t_batch)
            eps = predict_noise_fn(z_t, t_batch, candidates[i])
            errors[i, :, j] = ((eps.float() - noise) ** 2).flatten(1).mean(1)
    return errors


def _caption_errors(teacher, specs: Sequence[SceneSpec], captions: Sequence[Sequence[str]], timesteps: Sequence[int],
                    draws: int, seed: int) -> torch.Tensor:
    """The teacher's denoising errors on VAE-encoded renders of `specs`, clip i under each of its
    candidate captions `captions[i]` (the same number for every clip), at `timesteps` repeated
    `draws` times: [N, K, draws x len(timesteps)] (`diffusion_class_errors`)."""
    from t2v_turbo_core.models import predict_noise

    video = render(list(specs)).permute(0, 2, 1, 3, 4) * 2 - 1  # [N, 3, F, H, W] in [-1, 1]
    z0 = teacher.vae.encode(video, sample=False)
    candidates = torch.stack([teacher.text_encoder(list(c)) for c in captions])
    return diffusion_class_errors(lambda z, t, c: predict_noise(teacher.unet, z, t, c), z0, candidates,
                                  teacher.schedule, list(timesteps) * draws, torch.Generator().manual_seed(seed))


# Noise levels the denoising classifier averages over: where shapes are decided (mid t) and
# where their edges are drawn (low t); above ~800 the clean latent barely shows.
KNOWS_TIMESTEPS = (50, 150, 300, 450, 600, 800)


@torch.no_grad()
def teacher_knows_shapes(teacher, repeats: int = 2, seed: int = 906, timesteps: Sequence[int] = KNOWS_TIMESTEPS,
                         draws: int = 4) -> dict:
    """Does the teacher's conditioning carry shape, whatever its samples look like?

    Held-out renders of one still object, "a <colour> <shape>" for every colour and shape
    (`repeats` each), are encoded by the VAE and noised; the teacher predicts the noise under
    the five captions "a <colour> <s>" that differ only in the shape word, and the caption with
    the lowest error summed over `timesteps` x `draws` noise draws is its answer (chance 1/5).
    High accuracy here with low accuracy in `teacher_shapes` means the teacher knows the shapes
    but cannot draw them.
    """
    rng = np.random.default_rng([seed, 0])
    specs, truth = [], []
    for _ in range(repeats):
        for k, shape in enumerate(SHAPES):
            for color in COLORS:
                obj = sample_object(rng, action="still", shape=shape, color=color)
                specs.append(randomize_appearance(rng, SceneSpec(str(rng.choice(SCENES)), (obj,), scene_named=False)))
                truth.append(k)
    errors = _caption_errors(teacher, specs, [[f"a {s.objects[0].color} {shape}" for shape in SHAPES] for s in specs],
                             timesteps, draws, seed)
    pred = errors.sum(-1).argmin(1).tolist()
    errors = errors.unflatten(-1, (draws, len(timesteps))).mean(-2)
    confusion = np.zeros((len(SHAPES), len(SHAPES)), dtype=int)
    for k, p in zip(truth, pred):
        confusion[k, p] += 1
    per_t = (errors.argmin(1) == torch.tensor(truth)[:, None]).float().mean(0).tolist()
    return {**above_chance([float(k == p) for k, p in zip(truth, pred)], 1 / len(SHAPES)),
            "shapes": list(SHAPES), "confusion": confusion.tolist(), "timesteps": list(timesteps),
            "accuracy_per_timestep": per_t}


@torch.no_grad()
def teacher_knows_relations(teacher, repeats: int = 12, seed: int = 907, timesteps: Sequence[int] = KNOWS_TIMESTEPS,
                            draws: int = 2) -> dict:
    """Does the teacher's conditioning carry placement? `teacher_knows_shapes` for pairs.

    Held-out renders of two still objects in each relation (`repeats` each, shapes and colours
    drawn at random) are encoded and noised; the teacher predicts the noise under the four
    captions that differ only in the relation, and the one with the lowest error summed over
    `timesteps` x `draws` is its answer (chance 1/4). For contrast, the same clips under the two
    captions that name one object of the pair and leave the other out: `drop_one_gap` is how
    much larger (relative) their error is than the true caption's, `relation_gap` the same for
    the opposite relation. A teacher whose conditioning asks for both objects but not for where
    they go shows a large drop_one_gap, a small relation_gap and chance accuracy. The answer is
    also split into its axis (side by side or one over the other; chance 1/2) and, where that
    is right, its direction (which object goes first; chance 1/2).
    """
    rng = np.random.default_rng([seed, 0])
    specs = []
    for _ in range(repeats):
        for rel in RELATIONS:
            pair = sample_pair(rng, rel)
            specs.append(randomize_appearance(rng, SceneSpec(str(rng.choice(SCENES)), pair, relation=rel, scene_named=False)))
    captions = [[caption(replace(s, relation=r)) for r in RELATIONS]
                + [caption(replace(s, objects=(o,), relation=None)) for o in s.objects] for s in specs]
    total = _caption_errors(teacher, specs, captions, timesteps, draws, seed).sum(-1)  # [N, 4 relations + 2 single objects]
    truth = torch.tensor([RELATIONS.index(s.relation) for s in specs])
    pred = total[:, : len(RELATIONS)].argmin(1)
    pairs = list(zip(truth.tolist(), pred.tolist()))
    confusion = np.zeros((len(RELATIONS), len(RELATIONS)), dtype=int)
    for k, p in pairs:
        confusion[k, p] += 1
    e_true = total.gather(1, truth[:, None])[:, 0]
    opposite = torch.tensor([RELATIONS.index(OPPOSITE_RELATION[s.relation]) for s in specs])
    relation_gap = (total.gather(1, opposite[:, None])[:, 0] - e_true) / e_true
    drop_one_gap = (total[:, len(RELATIONS):].mean(1) - e_true) / e_true
    axis = [RELATION_AXIS[RELATIONS[k]] == RELATION_AXIS[RELATIONS[p]] for k, p in pairs]
    direction = [float(k == p) for (k, p), ax in zip(pairs, axis) if ax]
    return {**above_chance([float(k == p) for k, p in pairs], 1 / len(RELATIONS)),
            "axis": above_chance([float(a) for a in axis], 0.5), "direction_given_axis": above_chance(direction, 0.5),
            "relations": list(RELATIONS), "confusion": confusion.tolist(), "timesteps": list(timesteps),
            "relation_gap": float(relation_gap.mean()), "drop_one_gap": float(drop_one_gap.mean()),
            "drop_one_true_wins": float((drop_one_gap > 0).float().mean())}


def real_clip_sheet(path: str | Path, n: int = 10) -> None:
    """Contact sheet of ground-truth renders of benchmark prompts (what the teacher should draw)."""
    rng = np.random.default_rng([904, 0])
    entries = tiny_suite()[:: max(1, len(tiny_suite()) // n)][:n]
    specs = [spec_for_prompt(e, rng) for e in entries]
    contact_sheet(render(specs), [e.prompt for e in entries], path=str(path))
