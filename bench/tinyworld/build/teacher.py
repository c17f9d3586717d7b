"""The teacher's stages: tokenizers, VAE, the rendered training clips, and the teacher UNet with its phases (plain, shape, graft, contrast, layout)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.tinyworld import models as M
from bench.tinyworld.render import render
from bench.tinyworld.world import (
    FRAMES, OPPOSITE_RELATION, RELATION_PHRASES, SHAPES, SceneSpec, caption, training_scene,
)
from bench.tinyworld.build.common import (
    Context, StageError, atomic_torch_save, batch_rng, export, lr_factor, read_manifest, train_loop, update_manifest,
)


def stage_tokenizers(ctx: Context) -> None:
    t0 = time.time()
    M.build_tokenizers(ctx.zoo_dir)
    update_manifest(ctx.zoo_dir, "tokenizers", {"seconds": round(time.time() - t0, 1), "files": ["clip_tokenizer/tokenizer.json", "bert_tokenizer/vocab.txt"]})


VAE_STEPS = 1500


def stage_vae(ctx: Context, steps: int = VAE_STEPS) -> None:
    torch.manual_seed(0)
    vae = M.make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    held = ctx.held_out

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(101, step)
        clips = render([training_scene(rng, held) for _ in range(16)])
        pick = torch.from_numpy(np.stack([rng.choice(FRAMES, 4, replace=False) for _ in range(16)]))
        frames = torch.stack([clips[i, pick[i]] for i in range(16)]).flatten(0, 1) * 2 - 1
        post = vae.encode(frames).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - frames).abs().mean()
        mse = ((rec - frames) ** 2).mean()
        kl = post.kl().mean() / frames[0].numel()
        return {"loss": l1 + mse + 1e-4 * kl, "l1": l1, "kl": kl}

    info = train_loop(ctx, "vae", {"vae": vae}, opt, step_fn, steps, lr=1e-3, warmup=100, ckpt_every=250, ema_decay=0.999)
    # The latent scaling factor: 1 / std of latents, as Stable Diffusion's 0.18215 was chosen.
    with torch.no_grad():
        rng = batch_rng(102, 0)
        clips = render([training_scene(rng, held) for _ in range(64)])
        lat = vae.encode(clips.flatten(0, 1) * 2 - 1).latent_dist.sample()
        scale = float(1.0 / lat.std())
        rec = vae.decode(vae.encode(clips.flatten(0, 1) * 2 - 1).latent_dist.mode()).sample
        mae = float(((rec.clamp(-1, 1) + 1) / 2 - clips.flatten(0, 1)).abs().mean())
    vae.register_to_config(scaling_factor=scale)
    export(ctx, "vae", {"vae.safetensors": vae}, {**info, "config": {**M.vae_config(), "scaling_factor": scale}, "heldout_mae": mae})
    ctx.cache.pop("vae", None)


TEACHER_CLIPS = 30_000
SHARD = 1000


def stage_teacher_data(ctx: Context, clips: int = TEACHER_CLIPS) -> None:
    """Render and VAE-encode the teacher's training clips once (the VAE is frozen)."""
    out = ctx.work_dir / "teacher_data"
    out.mkdir(parents=True, exist_ok=True)
    vae = ctx.vae()
    scale = read_manifest(ctx.zoo_dir)["stages"]["vae"]["config"]["scaling_factor"]
    n_shards = math.ceil(clips / SHARD)
    task = ctx.progress.add_task("teacher_data", total=n_shards, info="") if ctx.progress else None
    t0 = time.time()
    for s in range(n_shards):
        path = out / f"shard_{s:03d}.pt"
        if not path.is_file():
            specs = _shard_specs(ctx, s)
            lats = []
            with torch.no_grad():
                for i in range(0, SHARD, 100):
                    v = render(specs[i : i + 100])
                    z = vae.encode(v.flatten(0, 1) * 2 - 1).latent_dist.sample() * scale
                    lats.append(z.reshape(v.shape[0], FRAMES, *z.shape[1:]).permute(0, 2, 1, 3, 4).half())
            atomic_torch_save({"latents": torch.cat(lats), "captions": [caption(sp) for sp in specs]}, path)
        if task is not None:
            ctx.progress.update(task, completed=s + 1)
    update_manifest(ctx.zoo_dir, "teacher_data", {"clips": clips, "seconds": round(time.time() - t0, 1), "files": []})


TEACHER_STEPS = 10000
# Constant learning rate to here, then a cosine to zero: the annealing phase is where the
# tiny teacher's samples sharpen (object shapes in particular).
TEACHER_DECAY_FROM = 6000
TEACHER_LR = 3e-4
TEACHER_BATCH = 32
CAPTION_DROPOUT = 0.1
# Phase 2, the shape phase: a warm restart (lower peak, cosine to zero) with the eps loss
# weighted up where objects are. Objects fill a tenth of a frame, so the plain loss spends
# nine tenths of its signal on backgrounds, and after phase 1 the teacher drew blobs: the
# right colour and place, the wrong shape.
SHAPE_STEPS = 5000
SHAPE_LR = 1e-4
SHAPE_WEIGHT = 4.0  # extra loss weight on latent pixels an object covers (1 + 4 = 5x)
# Phase 3, the graft: the shape phase left shapes where they were (the 8x8 level, where a
# shape is more than one latent cell, had no text input), so the EMA teacher of phase 2 gets
# zero-initialised cross-attention at 8x8 (models.graft_cross_attention_8x8) and is trained
# on with the same object-weighted loss.
GRAFT_STEPS = 3000
GRAFT_LR = 1e-4
GRAFT_DECAY_FROM = 1200
GRAFT_EMA = 0.998
# Phase 4, the contrast phase: after phase 3 the teacher's own denoising error told the shapes
# apart about half the time (check.teacher_knows_shapes): its conditioning carried little
# shape, and plain eps training has no term that asks it to. Here each batch also scores
# CONTRAST_PAIRS of its clips under a negative caption (one shape swapped, or the relation
# flipped) with the same noise, and a hinge asks the negative's object-weighted error to
# exceed the true caption's by a margin relative to it (a two-way diffusion classifier
# trained as one). The hinge stops pushing once the margin is met, so the wrong caption's
# prediction is not driven arbitrarily far.
CONTRAST_STEPS = 2000
CONTRAST_LR = 5e-5
CONTRAST_DECAY_FROM = 800
CONTRAST_PAIRS = 16
CONTRAST_MARGIN = 0.05
CONTRAST_WEIGHT = 1.0
RELATION_FLIP_PROB = 1 / 3

# Phase 5, the layout phase: after phase 4 the teacher laid a pair out on the asked axis but
# in the asked direction at chance. Where sampling starts (t near 1000) its x0 prediction put
# the colours in the same places under a caption and under its opposite relation: which side
# each object goes to was left to the noise. The direction is worth about 13% of the x0 error
# of a relation clip there, but the eps loss sees that error scaled by alpha_bar / (1 -
# alpha_bar) (1/200 at t = 999), and phases aimed at it through the eps loss, its hinge, or
# a grounding loss at every t did not move it (docs/tiny-world.md). Here LAYOUT_CLIPS relation
# clips per batch, at t >= LAYOUT_T_MIN, are trained on their x0 error (the eps error weighted
# by (1 - alpha_bar) / alpha_bar, capped) and on a grounding loss after TokenCompose (each
# object's colour and shape tokens should draw their cross-attention from the cells that
# object covers), and every spatial transformer gets a zero-initialised position bias
# (models.add_spatial_position_bias) so that a query knows where it is before any object
# shows. The usual batch (object-weighted eps at every t) goes on beside them.
LAYOUT_STEPS = 1400
LAYOUT_LR = 1e-4
LAYOUT_CLIPS = 16
LAYOUT_T_MIN = 970
LAYOUT_X0_CAP = 250.0  # (1 - alpha_bar) / alpha_bar is 214 at t = 999: the cap only guards
LAYOUT_WEIGHT = 0.5
GROUND_WEIGHT = 1.0
GROUND_MASK_MIN = 0.05  # a latent cell belongs to an object's mask from this area fraction on
# The position bias starts at zero and must grow to the scale of the normed features it is
# added to within the phase; the rest of the teacher only adapts to it.
POSITION_LR_SCALE = 40.0


def teacher_lr(step: int) -> float:
    """Phases 1 and 2's learning rate at `step` (a function of the step alone, so resumes agree)."""
    if step < TEACHER_STEPS:
        return TEACHER_LR * lr_factor(step, TEACHER_STEPS, 300, TEACHER_DECAY_FROM)
    return SHAPE_LR * lr_factor(step - TEACHER_STEPS, SHAPE_STEPS, 100, 0)


def object_weight(area: torch.Tensor, factor: int, extra: float) -> torch.Tensor:
    """Per-latent-pixel loss weight from the objects' pixel area [B, F, H, W]: 1 + extra x the
    area fraction of each latent cell. Returns [B, 1, F, H/factor, W/factor] (the latent layout)."""
    cells = F.avg_pool2d(area.flatten(0, 1)[:, None], factor)
    b, f = area.shape[:2]
    return 1.0 + extra * cells.reshape(b, f, 1, *cells.shape[-2:]).permute(0, 2, 1, 3, 4)


def contrast_negative(rng: np.random.Generator, spec: SceneSpec) -> SceneSpec | None:
    """The contrast phase's negative: the same clip with one object's shape swapped (for a
    pair, the relation flipped instead a third of the time). None for a clip without objects."""
    if not spec.objects:
        return None
    if spec.relation is not None and rng.random() < RELATION_FLIP_PROB:
        return replace(spec, relation=OPPOSITE_RELATION[spec.relation])
    i = int(rng.integers(len(spec.objects)))
    o = spec.objects[i]
    pool = [s for s in SHAPES if s not in {x.shape for x in spec.objects} and not (s == "circle" and o.action == "spinning")]
    objs = list(spec.objects)
    objs[i] = replace(o, shape=str(rng.choice(pool)))
    return replace(spec, objects=tuple(objs))


def contrast_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, margin: float = CONTRAST_MARGIN) -> torch.Tensor:
    """Hinge on per-clip denoising errors under the true (e_pos) and negative (e_neg) caption:
    zero once e_neg >= (1 + margin) e_pos. The margin scales with e_pos (detached) because the
    error's size varies by an order of magnitude over the timesteps. A batch without pairs
    (every clip captionless or object-less) contributes zero, not the NaN of an empty mean."""
    if e_pos.numel() == 0:
        return e_pos.sum()
    return F.relu(margin * e_pos.detach() - (e_neg - e_pos)).mean()


def object_word_positions(spec: SceneSpec) -> list[list[int]]:
    """For each object of `spec`, the word indices (in caption(spec).split()) of its colour (when
    named) and shape: "a red circle to the left of a blue square" -> [[1, 2], [8, 9]]."""
    out, start = [], 0
    for o in spec.objects:
        n = 3 if o.color_named else 2  # "a [colour] shape"
        out.append(list(range(start + 1, start + n)))
        start += n + (len(RELATION_PHRASES[spec.relation].split()) if spec.relation else 1)  # or "and"
    return out


def object_token_positions(tok, spec: SceneSpec) -> list[list[int]]:
    """The same as token indices of the padded caption (position 0 is the start token)."""
    words = caption(spec).split()
    starts = np.cumsum([1] + [len(tok(w, add_special_tokens=False).input_ids) for w in words])
    out = []
    for positions in object_word_positions(spec):
        # "star," is "star" then ","; the comma is not the object's.
        out.append([int(j) for i in positions
                    for j in range(starts[i], starts[i] + len(tok(words[i].rstrip(","), add_special_tokens=False).input_ids))])
    return out


class AttentionMapProcessor:
    """diffusers cross-attention, computed step by step so that its attention probabilities can
    be kept (the fused kernel does not return them): appends (side, probabilities averaged over
    heads [batch, queries, tokens]) to `store` on every call."""

    def __init__(self, store: list, side: int):
        self.store, self.side = store, side

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is None or attn.residual_connection or attn.norm_cross:
            raise ValueError("AttentionMapProcessor serves plain cross-attention only")
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, attention_mask)
        self.store.append((self.side, probs.unflatten(0, (-1, attn.heads)).mean(1)))
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def grounding_loss(maps: list[tuple[int, torch.Tensor]], frames: int, clip: torch.Tensor, token: torch.Tensor,
                   area: torch.Tensor, mask_min: float = GROUND_MASK_MIN) -> torch.Tensor:
    """TokenCompose's token loss: (1 - the share of a token's cross-attention that falls inside its
    object's mask)^2, the share averaged over attention layers and frames, the loss over (clip,
    token) entries. maps: (side, [clips * frames, side * side, tokens]) per layer; clip, token:
    [E] entry indices; area: the entry's object area [E, frames, H, W] in pixels (pooled to each
    layer's side). No entries: zero, not the NaN of an empty mean."""
    if clip.numel() == 0:
        return area.sum() * 0.0
    shares = []
    for side, probs in maps:
        a = probs.unflatten(0, (-1, frames))[clip, :, :, token]  # [E, frames, side * side]
        cells = F.adaptive_avg_pool2d(area.flatten(0, 1), side).reshape(*area.shape[:2], side * side)
        shares.append((a * (cells >= mask_min)).sum(-1) / a.sum(-1).clamp_min(1e-8))
    inside = torch.stack(shares).mean((0, 2))  # [E]
    return ((1 - inside) ** 2).mean()


def layout_weight(alpha_bar: torch.Tensor, cap: float = LAYOUT_X0_CAP) -> torch.Tensor:
    """The eps error's weight that makes it the x0 error: x0 - x0_hat = sqrt((1 - alpha_bar) /
    alpha_bar) (eps_hat - eps), squared; capped, so t near 1000 of another schedule cannot blow up."""
    return ((1 - alpha_bar) / alpha_bar).clamp(max=cap)


def _shard_specs(ctx: Context, shard: int) -> list:
    """The scene specs behind teacher_data shard `shard` (re-drawn from its seed)."""
    rng = batch_rng(201, shard)
    return [training_scene(rng, ctx.held_out) for _ in range(SHARD)]


def stage_teacher(ctx: Context, steps: int = TEACHER_STEPS + SHAPE_STEPS, graft_steps: int = GRAFT_STEPS,
                  contrast_steps: int = CONTRAST_STEPS, layout_steps: int = LAYOUT_STEPS) -> None:
    """Text encoder + UNet3D trained jointly with the eps objective and caption dropout;
    then the shape phase (object-weighted eps loss, warm restart); then cross-attention is
    grafted in at 8x8 and training goes on (the graft phase, its own resumable state); then
    the contrast phase (object-weighted eps loss plus a hinge against negative captions); then
    a position bias is grafted in and the layout phase asks relation clips near t = 1000 for
    their x0 and for each object's words to attend to that object, beside the usual batch."""
    from t2v_turbo_core.schedule import NoiseSchedule

    data_dir = ctx.work_dir / "teacher_data"
    shards = sorted(data_dir.glob("shard_*.pt"))
    if not shards:
        raise StageError(f"no teacher data in {data_dir}; run the teacher_data stage first")
    data = [torch.load(p, map_location="cpu", weights_only=True) for p in shards]
    latents = torch.cat([d["latents"] for d in data])
    captions = [c for d in data for c in d["captions"]]
    specs_cache: dict[int, list] = {}

    def specs_at(i: int):
        shard = i // SHARD
        if shard not in specs_cache:
            specs = _shard_specs(ctx, shard)
            if [caption(sp) for sp in specs] != data[shard]["captions"]:
                raise StageError(f"teacher_data shard {shard} no longer matches its seed (the world changed); "
                                 "rebuild it with `bench zoo build -s teacher_data --force`")
            specs_cache[shard] = specs
        return specs_cache[shard][i % SHARD]

    tok = ctx.clip_tokenizer()
    torch.manual_seed(0)
    text_encoder = M.make_text_encoder(tok)
    unet = M.make_teacher_unet(cross_attention_at_8x8=False, position_bias=False)
    schedule = NoiseSchedule.scaled_linear()

    def make_step_fn(seed: int, object_weighted_from: int):
        def step_fn(step: int) -> dict[str, torch.Tensor]:
            rng = batch_rng(seed, step)
            idx = rng.integers(0, len(captions), TEACHER_BATCH)
            z0 = latents[torch.from_numpy(idx)].float()
            texts = ["" if rng.random() < CAPTION_DROPOUT else captions[i] for i in idx]
            ids = tok(texts, padding="max_length", max_length=M.TEXT_CONTEXT, truncation=True, return_tensors="pt").input_ids
            cond = text_encoder(ids).last_hidden_state
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            noise = torch.randn(z0.shape, generator=g)
            t = torch.randint(0, 1000, (TEACHER_BATCH,), generator=g)
            eps = unet(schedule.add_noise(z0, noise, t), t, encoder_hidden_states=cond).sample
            if step < object_weighted_from:
                mse = F.mse_loss(eps, noise)
                return {"loss": mse, "mse": mse.detach()}
            _, area = render([specs_at(int(i)) for i in idx], with_object_area=True)
            w = object_weight(area, area.shape[-1] // z0.shape[-1], SHAPE_WEIGHT)
            se = (eps - noise) ** 2
            loss = (w * se).sum() / (w.sum() * z0.shape[1])
            return {"loss": loss, "mse": se.mean().detach()}

        return step_fn

    def contrast_step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(501, step)
        idx = rng.integers(0, len(captions), TEACHER_BATCH)
        z0 = latents[torch.from_numpy(idx)].float()
        specs = [specs_at(int(i)) for i in idx]
        dropped = [rng.random() < CAPTION_DROPOUT for _ in idx]
        texts = ["" if d else captions[i] for d, i in zip(dropped, idx)]
        pairs = [k for k in range(TEACHER_BATCH) if not dropped[k] and specs[k].objects][:CONTRAST_PAIRS]
        negatives = [caption(contrast_negative(rng, specs[k])) for k in pairs]
        ids = tok(texts + negatives, padding="max_length", max_length=M.TEXT_CONTEXT, truncation=True,
                  return_tensors="pt").input_ids
        cond = text_encoder(ids).last_hidden_state
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(0, 1000, (TEACHER_BATCH,), generator=g)
        z_t = schedule.add_noise(z0, noise, t)
        # One UNet call for the batch and its negatives: same noisy latents, same t.
        eps = unet(torch.cat([z_t, z_t[pairs]]), torch.cat([t, t[pairs]]), encoder_hidden_states=cond).sample
        _, area = render(specs, with_object_area=True)
        w = object_weight(area, area.shape[-1] // z0.shape[-1], SHAPE_WEIGHT)
        w = torch.cat([w, w[pairs]])
        se = (eps - torch.cat([noise, noise[pairs]])) ** 2
        per_clip = (w * se).flatten(1).sum(1) / (w.expand_as(se).flatten(1).sum(1))
        n = TEACHER_BATCH
        plain = (w[:n] * se[:n]).sum() / (w[:n].sum() * z0.shape[1])
        e_pos, e_neg = per_clip[pairs], per_clip[n:]
        hinge = contrast_loss(e_pos, e_neg)
        logs = {"loss": plain + CONTRAST_WEIGHT * hinge, "mse": se[:n].mean().detach(), "hinge": hinge.detach()}
        if pairs:
            gap = ((e_neg - e_pos) / e_pos).detach()
            logs.update(gap=gap.mean(), won=(gap > 0).float().mean())
        return logs

    def preview(step: int) -> None:
        # `unet` is looked up at call time: after the graft it is the grown UNet.
        if step % 1000 == 0:
            _teacher_preview(ctx, text_encoder, unet, step)

    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=TEACHER_LR, weight_decay=0.01)
    info = train_loop(
        ctx, "teacher", {"text_encoder": text_encoder, "unet": unet}, opt, make_step_fn(301, TEACHER_STEPS), steps,
        lr=TEACHER_LR, ckpt_every=200, ema_decay=0.999, on_checkpoint=preview, lr_at=teacher_lr,
    )
    # train_loop leaves the EMA weights in place: the graft starts from phase 2's teacher.
    # The new blocks' initial weights draw on the torch RNG as phase 2 left it, which a
    # resumed build restores from phase 2's checkpoint, so the graft is reproducible too.
    unet = M.graft_cross_attention_8x8(unet)
    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=GRAFT_LR, weight_decay=0.01)
    graft_info = train_loop(
        ctx, "teacher_graft", {"text_encoder": text_encoder, "unet": unet}, opt, make_step_fn(401, 0), graft_steps,
        lr=GRAFT_LR, ckpt_every=200, ema_decay=GRAFT_EMA, on_checkpoint=lambda s: preview(steps + s),
        decay_from=GRAFT_DECAY_FROM,
    )
    opt = torch.optim.AdamW(params, lr=CONTRAST_LR, weight_decay=0.01)
    contrast_info = train_loop(
        ctx, "teacher_contrast", {"text_encoder": text_encoder, "unet": unet}, opt, contrast_step_fn, contrast_steps,
        lr=CONTRAST_LR, ckpt_every=200, ema_decay=GRAFT_EMA, on_checkpoint=lambda s: preview(steps + graft_steps + s),
        decay_from=CONTRAST_DECAY_FROM,
    )
    # The position graft: zero-initialised, so the layout phase starts from phase 4's teacher.
    unet = M.add_spatial_position_bias(unet)
    maps: list = []
    blocks = [(b, side) for tr, side in M.spatial_transformer_resolutions(unet) for b in tr.transformer_blocks]
    plain_processors = [b.attn2.processor for b, _ in blocks]
    for b, side in blocks:
        b.attn2.set_processor(AttentionMapProcessor(maps, side))
    relation_clips = np.array([i for i in range(len(captions)) if specs_at(i).relation is not None])

    def layout_step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = batch_rng(621, step)
        idx = np.concatenate([rng.integers(0, len(captions), TEACHER_BATCH), rng.choice(relation_clips, LAYOUT_CLIPS)])
        n = TEACHER_BATCH
        z0 = latents[torch.from_numpy(idx)].float()
        specs = [specs_at(int(i)) for i in idx]
        # Caption dropout on the usual batch only: the layout clips are there for their captions.
        texts = ["" if rng.random() < CAPTION_DROPOUT else captions[i] for i in idx[:n]] + [captions[i] for i in idx[n:]]
        ids = tok(texts, padding="max_length", max_length=M.TEXT_CONTEXT, truncation=True, return_tensors="pt").input_ids
        cond = text_encoder(ids).last_hidden_state
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(z0.shape, generator=g)
        t = torch.cat([torch.randint(0, 1000, (n,), generator=g), torch.randint(LAYOUT_T_MIN, 1000, (LAYOUT_CLIPS,), generator=g)])
        maps.clear()
        eps = unet(schedule.add_noise(z0, noise, t), t, encoder_hidden_states=cond).sample
        _, area = render(specs, with_object_area=True)
        w = object_weight(area, area.shape[-1] // z0.shape[-1], SHAPE_WEIGHT)
        se = (eps - noise) ** 2
        plain = (w[:n] * se[:n]).sum() / (w[:n].sum() * z0.shape[1])
        per_clip = (w[n:] * se[n:]).flatten(1).sum(1) / w[n:].expand_as(se[n:]).flatten(1).sum(1)
        layout = (layout_weight(schedule.alpha_bar(t[n:])) * per_clip).mean()
        # One grounding entry per (layout clip, object token); each object's mask from a render of it alone.
        single, clip, token, row = [], [], [], []
        for b, sp in enumerate(specs[n:]):
            for k, positions in enumerate(object_token_positions(tok, sp)):
                for j in positions:
                    clip.append(n + b), token.append(j), row.append(len(single))
                single.append(replace(sp, objects=(sp.objects[k],), relation=None))
        obj_area = render(single, with_object_area=True)[1][torch.tensor(row, dtype=torch.long)]
        ground = grounding_loss(maps, FRAMES, torch.tensor(clip, dtype=torch.long), torch.tensor(token, dtype=torch.long), obj_area)
        maps.clear()
        return {"loss": plain + LAYOUT_WEIGHT * layout + GROUND_WEIGHT * ground, "mse": se[:n].mean().detach(),
                "layout": layout.detach(), "ground": ground.detach()}

    bias = [p for name, p in unet.named_parameters() if name.endswith("pos_embed.weight")]
    rest = [p for name, p in unet.named_parameters() if not name.endswith("pos_embed.weight")]
    opt = torch.optim.AdamW([{"params": list(text_encoder.parameters()) + rest},
                             {"params": bias, "lr_scale": POSITION_LR_SCALE, "weight_decay": 0.0}],
                            lr=LAYOUT_LR, weight_decay=0.01)

    def layout_checkpoint(s: int) -> None:
        preview(steps + graft_steps + contrast_steps + s)
        maps.clear()

    layout_info = train_loop(
        ctx, "teacher_layout", {"text_encoder": text_encoder, "unet": unet}, opt, layout_step_fn, layout_steps,
        lr=LAYOUT_LR, warmup=50, ckpt_every=100, ema_decay=GRAFT_EMA, on_checkpoint=layout_checkpoint,
    )
    for (b, _), processor in zip(blocks, plain_processors):
        b.attn2.set_processor(processor)
    export(
        ctx, "teacher", {"text_encoder.safetensors": text_encoder, "teacher_unet.safetensors": unet},
        {"steps": info["steps"] + graft_info["steps"] + contrast_info["steps"] + layout_info["steps"],
         "seconds": round(info["seconds"] + graft_info["seconds"] + contrast_info["seconds"] + layout_info["seconds"], 1),
         "final": layout_info["final"],
         "config": {"unet": M.teacher_unet_config(), "caption_dropout": CAPTION_DROPOUT, "batch": TEACHER_BATCH,
                    "phases": {"plain": {"steps": TEACHER_STEPS, "lr": TEACHER_LR, "decay_from": TEACHER_DECAY_FROM},
                               "shape": {"steps": SHAPE_STEPS, "lr": SHAPE_LR, "object_weight": 1 + SHAPE_WEIGHT},
                               "graft": {"steps": graft_steps, "lr": GRAFT_LR, "decay_from": GRAFT_DECAY_FROM,
                                         "ema": GRAFT_EMA, "object_weight": 1 + SHAPE_WEIGHT,
                                         "seconds": graft_info["seconds"],
                                         "unet_before": M.teacher_unet_config(cross_attention_at_8x8=False)},
                               "contrast": {"steps": contrast_steps, "lr": CONTRAST_LR, "decay_from": CONTRAST_DECAY_FROM,
                                            "ema": GRAFT_EMA, "pairs": CONTRAST_PAIRS, "margin": CONTRAST_MARGIN,
                                            "weight": CONTRAST_WEIGHT, "relation_flip": RELATION_FLIP_PROB,
                                            "seconds": contrast_info["seconds"]},
                               "layout": {"steps": layout_steps, "lr": LAYOUT_LR, "ema": GRAFT_EMA,
                                          "object_weight": 1 + SHAPE_WEIGHT, "clips": LAYOUT_CLIPS,
                                          "t_min": LAYOUT_T_MIN, "x0_cap": LAYOUT_X0_CAP, "weight": LAYOUT_WEIGHT,
                                          "ground_weight": GROUND_WEIGHT, "mask_min": GROUND_MASK_MIN,
                                          "position_lr_scale": POSITION_LR_SCALE, "seconds": layout_info["seconds"],
                                          "unet_before": "no position bias (models.add_spatial_position_bias)"}}}},
    )


PREVIEW_PROMPTS = [
    "a red circle moving left",
    "a blue square in a desert",
    "a yellow star to the left of a green cross",
    "a purple triangle growing at night",
    "a white cross in a room, in striped style",
    "a forest, camera pans right",
]


@torch.no_grad()
def _teacher_preview(ctx: Context, text_encoder, unet, step: int) -> None:
    """A contact sheet of 50-step CFG samples (current weights) for watching training."""
    from bench.tinyworld.render import contact_sheet
    from t2v_turbo_core.sampling import teacher_ddim_sample
    from t2v_turbo_core.schedule import NoiseSchedule

    was_training = unet.training
    unet.eval()
    text_encoder.eval()
    tok = ctx.clip_tokenizer()
    ids = tok(PREVIEW_PROMPTS + [""], padding="max_length", max_length=M.TEXT_CONTEXT, truncation=True, return_tensors="pt").input_ids
    emb = text_encoder(ids).last_hidden_state
    n = len(PREVIEW_PROMPTS)
    out = teacher_ddim_sample(unet, emb[:n], emb[n:], (n, 4, FRAMES, 8, 8), NoiseSchedule.scaled_linear(), num_steps=50,
                              guidance_scale=7.5, generator=torch.Generator().manual_seed(0))
    scale = read_manifest(ctx.zoo_dir)["stages"]["vae"]["config"]["scaling_factor"]
    vae = ctx.vae()
    z = out.latents / scale
    px = vae.decode(z.permute(0, 2, 1, 3, 4).flatten(0, 1)).sample
    vid = ((px.clamp(-1, 1) + 1) / 2).reshape(n, FRAMES, 3, 32, 32)
    contact_sheet(vid, PREVIEW_PROMPTS, path=str(ctx.work_dir / "teacher" / f"preview_{step:06d}.png"))
    if was_training:
        unet.train()
        text_encoder.train()


TEACHER_STAGES: dict[str, Callable[[Context], None]] = {
    "tokenizers": stage_tokenizers,
    "vae": stage_vae,
    "teacher_data": stage_teacher_data,
    "teacher": stage_teacher,
}


