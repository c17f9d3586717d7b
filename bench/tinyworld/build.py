"""`bench zoo build`: train every model of the tiny world from scratch, resumably.

Each stage trains one model (or a pair) on clips rendered on the fly, checkpoints its
whole state (weights, optimiser, EMA, step) atomically every few hundred steps under the
work directory, and on completion exports fp16 safetensors into the zoo directory plus an
entry in `zoo.json` (config, steps, wall time). A stage whose export exists is skipped; an
interrupted stage resumes from its last checkpoint. Batches are a pure function of
(stage seed, step), so a resumed run sees exactly the data it would have seen.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t2v_turbo_core.safe_io import atomic_write, atomic_write_json
from bench.errors import RUN_FAILED, BenchError
from bench.tinyworld import models as M
from bench.tinyworld.render import render
from bench.tinyworld.suite import held_out_prompts
from bench.tinyworld.world import FRAMES, OPPOSITE_RELATION, RELATION_PHRASES, SHAPES, SceneSpec, caption, training_scene

DEFAULT_ZOO_DIR = Path(__file__).resolve().parent / "zoo"
DEFAULT_WORK_DIR = Path("runs") / "zoo-build"


class StageError(BenchError, RuntimeError):
    """A zoo build stage failed its gate (exit 1)."""

    code = RUN_FAILED


def batch_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_manifest(zoo_dir: Path) -> dict:
    path = zoo_dir / "zoo.json"
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def write_manifest(zoo_dir: Path, manifest: dict) -> None:
    from bench.validate import json_safe

    # Strict JSON: a diverged stage's NaN loss is recorded as null, not as a non-JSON token.
    atomic_write_json(zoo_dir / "zoo.json", json_safe(manifest), indent=2, sort_keys=True)


def update_manifest(zoo_dir: Path, stage: str, entry: dict) -> None:
    """Read-modify-write of zoo.json under a file lock: stages may run in parallel processes."""
    import fcntl

    zoo_dir.mkdir(parents=True, exist_ok=True)
    with open(zoo_dir / ".zoo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(zoo_dir)
        manifest["stages"][stage] = entry
        write_manifest(zoo_dir, manifest)


class EMA:
    """Exponential moving average of a module's floating-point state (exported weights)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        # Warm-up: a short average at first, so early exports are not dominated by init.
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    def copy_to(self, module: nn.Module) -> None:
        state = module.state_dict()
        state.update({k: v.clone() for k, v in self.shadow.items()})
        module.load_state_dict(state)


@dataclass
class Context:
    zoo_dir: Path
    work_dir: Path
    progress: object = None  # rich Progress, or None
    log: Callable[[str], None] = print
    cache: dict = field(default_factory=dict)

    @property
    def held_out(self) -> frozenset[str]:
        return held_out_prompts()

    def clip_tokenizer(self):
        if "clip_tok" not in self.cache:
            self.cache["clip_tok"] = M.load_clip_tokenizer(self.zoo_dir)
        return self.cache["clip_tok"]

    def bert_tokenizer(self):
        if "bert_tok" not in self.cache:
            self.cache["bert_tok"] = M.load_bert_tokenizer(self.zoo_dir)
        return self.cache["bert_tok"]

    def vae(self):
        if "vae" not in self.cache:
            vae = M.load_module(M.make_vae(), self.zoo_dir / "vae.safetensors")
            self.cache["vae"] = vae
        return self.cache["vae"]


def lr_factor(step: int, total_steps: int, warmup: int, decay_from: int | None = None) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    f = min(1.0, (step + 1) / warmup)
    if decay_from is not None and step >= decay_from:
        f *= 0.5 * (1.0 + math.cos(math.pi * (step - decay_from) / max(1, total_steps - decay_from)))
    return f


def train_loop(
    ctx: Context,
    name: str,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, torch.Tensor]],
    total_steps: int,
    lr: float,
    warmup: int = 100,
    ckpt_every: int = 200,
    ema_decay: float | None = None,
    clip_grad: float = 1.0,
    on_checkpoint: Callable[[int], None] | None = None,
    decay_from: int | None = None,
    lr_at: Callable[[int], float] | None = None,
) -> dict:
    """Generic resumable loop: step_fn(step) returns {"loss": ..., other logs}.

    The learning rate warms up linearly, stays constant, and from `decay_from` (if given)
    follows a cosine down to zero at `total_steps`; `lr_at(step)` replaces that schedule.
    """
    stage_dir = ctx.work_dir / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    state_path = stage_dir / "state.pt"
    emas = {k: EMA(m, ema_decay) for k, m in modules.items()} if ema_decay else {}
    step, elapsed = 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        optimizer.load_state_dict(state["optimizer"])
        for k, e in emas.items():
            e.shadow = state["ema"][k]
        step, elapsed = int(state["step"]), float(state["elapsed"])
        torch.set_rng_state(state["torch_rng"])
        ctx.log(f"[{name}] resuming at step {step}/{total_steps}")
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    log_path = stage_dir / "log.csv"
    task = ctx.progress.add_task(name, total=total_steps, completed=step, info="") if ctx.progress else None
    t0 = time.time() - elapsed

    def save():
        atomic_torch_save(
            {
                "step": step,
                "elapsed": time.time() - t0,
                "modules": {k: m.state_dict() for k, m in modules.items()},
                "optimizer": optimizer.state_dict(),
                "ema": {k: e.shadow for k, e in emas.items()},
                "torch_rng": torch.get_rng_state(),
            },
            state_path,
        )

    for m in modules.values():
        m.train()
    running: dict[str, float] = {}
    while step < total_steps:
        for group in optimizer.param_groups:
            base = lr_at(step) if lr_at is not None else lr * lr_factor(step, total_steps, warmup, decay_from)
            group["lr"] = base * group.get("lr_scale", 1.0)
        logs = step_fn(step)
        loss = logs["loss"]
        if not torch.isfinite(loss):
            raise StageError(f"[{name}] non-finite loss at step {step}; last checkpoint kept at {state_path}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
        step += 1
        for k, e in emas.items():
            e.update(modules[k], step)
        for k, v in logs.items():
            fv = float(v.detach()) if torch.is_tensor(v) else float(v)
            running[k] = 0.98 * running.get(k, fv) + 0.02 * fv
        if task is not None:
            ctx.progress.update(task, completed=step, info=" ".join(f"{k}={v:.4f}" for k, v in running.items()))
        if step % 20 == 0 or step == total_steps:
            new = not log_path.exists()
            with open(log_path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(["step", "seconds", *running.keys()])
                w.writerow([step, f"{time.time() - t0:.1f}", *(f"{v:.6f}" for v in running.values())])
        if step % ckpt_every == 0 or step == total_steps:
            save()
            if on_checkpoint is not None:
                on_checkpoint(step)
    if not running and log_path.exists():
        # Resumed at its end (a finished stage re-exported): the final losses are the log's last row.
        with open(log_path, newline="") as fh:
            last = list(csv.DictReader(fh))[-1:]
        running = {k: float(v) for row in last for k, v in row.items() if k not in ("step", "seconds")}
    for k, e in emas.items():
        e.copy_to(modules[k])
    for m in modules.values():
        m.eval()
    return {"steps": total_steps, "seconds": round(time.time() - t0, 1), "final": {k: round(v, 5) for k, v in running.items()}}


def export(ctx: Context, stage: str, files: dict[str, nn.Module], info: dict) -> None:
    """Write fp16 safetensors (halves the shipped size; loaded back as fp32) + manifest."""
    for fname, module in files.items():
        from safetensors.torch import save_file

        half = {k: (v.half() if v.dtype.is_floating_point else v) for k, v in module.state_dict().items()}
        atomic_write(ctx.zoo_dir / fname,
                     lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in half.items()}, str(tmp)))
    update_manifest(ctx.zoo_dir, stage, {**info, "files": sorted(files), "threads": torch.get_num_threads()})


def stage_done(ctx: Context, stage: str) -> bool:
    entry = read_manifest(ctx.zoo_dir)["stages"].get(stage)
    return bool(entry) and all((ctx.zoo_dir / f).is_file() for f in entry.get("files", []))


# --- stages -----------------------------------------------------------------------------


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


STAGES: dict[str, Callable[[Context], None]] = {
    "tokenizers": stage_tokenizers,
    "vae": stage_vae,
    "teacher_data": stage_teacher_data,
    "teacher": stage_teacher,
}


# --- reward models and evaluators ----------------------------------------------------------

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


STAGES.update(
    {
        "recon_pool": stage_recon_pool,
        "rm_image": stage_rm_image,
        "rm_viclip": stage_rm_viclip,
        "rm_internvid2": stage_rm_internvid2,
        "eval_probe": stage_eval_probe,
        "eval_clip": stage_eval_clip,
        "eval_quality": stage_eval_quality,
        "eval_vt": stage_eval_vt,
    }
)
