"""T2V-Turbo-v2 in the harness: its config block, the teacher cache on disk, training from it.

A training config becomes a v2 config with a `v2:` block (`bench/configs/tiny_v2.yaml`,
`vc2_v2.yaml`); `bench preprocess` builds the cache it names and `bench train` then trains
from the cache instead of running the teacher (`t2v_turbo_core.teacher_cache`). The keys, with
the released code's value first where it has one (docs/method-v2.md has the table):

  cache               the cache folder (`bench preprocess` writes it, `bench train` reads it)
  videos              tiny world: how many training clips the cache holds (real: the caption file's)
  records_per_shard   records per shard file (a shard is written whole or not at all)
  record_dtype        float32 (ours) | float16 (released: its pickles store fp16)
  motion_gs           0.05 (released --motion_gs; paper lambda = 500); 0 = "v2 without motion guidance"
  tau                 0.5 (released --percentage): guidance on grid indices >= (1 - tau) N
  coefficient         released (sqrt(1 - sqrt(abar_t))) | sigma (sqrt(1 - abar_t))
  motion_cond         true (released --use_motion_cond): the student also takes m as input
  motion_cond_init    identity (ours: starts as v1's function) | released (nn.Linear's random init)
  decouple_rewards    true (released): rewards only on videos with a short caption, scored against it
  clip_h_weight       1.0 (released --reward_weights (1, 1)): R_img = hpsv21_weight HPSv2.1 + clip_h_weight
                      CLIP-H (`weights.clip_h=open_clip_pytorch_model.bin`); 0 = the image reward alone
  hpsv21_weight       1.0 (released)
  sample_steps        16 (released predict.py), on the origin grid of the run's N (200 for k = 5)
  inference_motion_gs 0.05 and inference_percentage 0.5 (predict.py): m at t >= T (1 - percentage)
  finetune            full (released: the whole UNet trains, no target network) | lora (ours in
                      tiny_v2 / vc2_v2: adapters + the w projection and motion-condition layers)
  temporal_lr_scale   1.0 (released --temporal_lr_scale): the learning rate of the temporal
                      transformers' weights (VideoCrafter2's TemporalTransformer and init_attn,
                      diffusers' TransformerTemporalModel) is lr x this; the rest trains at lr
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.errors import BenchError

SHARD_PATTERN = "shard-{:05d}.safetensors"
CACHE_MANIFEST = "cache.json"
CACHE_FORMAT = 1
RECORD_DTYPES = ("float32", "float16")
COEFFICIENTS = ("released", "sigma")
MOTION_COND_INITS = ("identity", "released")
FINETUNES = ("lora", "full")
# The modules the released script puts in its temporal learning-rate group: LVDM's temporal
# transformer (each block's and the init_attn after the input conv) and diffusers' equivalent.
TEMPORAL_MODULES = ("TemporalTransformer", "TransformerTemporalModel")


class V2Error(BenchError):
    """Bad v2 input (exit 2) or a failed v2 run (code=1)."""


@dataclass(frozen=True)
class V2Settings:
    cache: str | None = None
    videos: int = 64
    records_per_shard: int = 8
    record_dtype: str = "float32"
    motion_gs: float = 0.05
    tau: float = 0.5
    coefficient: str = "released"
    motion_cond: bool = True
    motion_cond_init: str = "identity"
    decouple_rewards: bool = True
    clip_h_weight: float = 0.0
    hpsv21_weight: float = 1.0
    sample_steps: int = 16
    inference_motion_gs: float = 0.05
    inference_percentage: float = 0.5
    finetune: str = "lora"
    temporal_lr_scale: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> "V2Settings":
        raw = dict(getattr(cfg, "v2", None) or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise V2Error(f"unknown v2 key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values = {k: _coerce(k, v, known[k].type) for k, v in raw.items()}
        settings = cls(**values)
        settings.validate(cfg)
        return settings

    def validate(self, cfg: Any) -> None:
        errors = []
        for name in ("videos", "records_per_shard", "sample_steps"):
            if getattr(self, name) < 1:
                errors.append(f"v2.{name}={getattr(self, name)} must be >= 1")
        for name in ("motion_gs", "inference_motion_gs", "clip_h_weight", "hpsv21_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                errors.append(f"v2.{name}={getattr(self, name)} must be a finite number >= 0")
        for name in ("tau", "inference_percentage"):
            if not 0 <= getattr(self, name) <= 1:
                errors.append(f"v2.{name}={getattr(self, name)} must be in [0, 1]")
        if not 0 < self.temporal_lr_scale < float("inf"):
            errors.append(f"v2.temporal_lr_scale={self.temporal_lr_scale} must be a finite number > 0")
        for name, allowed in (("record_dtype", RECORD_DTYPES), ("coefficient", COEFFICIENTS), ("motion_cond_init", MOTION_COND_INITS),
                              ("finetune", FINETUNES)):
            if getattr(self, name) not in allowed:
                errors.append(f"v2.{name}={getattr(self, name)!r} (one of {', '.join(allowed)})")
        grid = 1000 // int(getattr(cfg, "skip", 5) or 5)
        if self.sample_steps > grid:
            errors.append(f"v2.sample_steps={self.sample_steps} exceeds the {grid} points of the origin grid (1000 // skip)")
        if self.motion_cond and self.finetune == "lora" and getattr(cfg, "w_proj_init", "zero") == "released":
            errors.append("v2.motion_cond=true needs the w projection trained in full (w_proj_init=zero)")
        if self.clip_h_weight > 0 and getattr(cfg, "teacher", None) == "tiny":
            errors.append("v2.clip_h_weight > 0: the tiny zoo has no CLIP-H (use 0 in the tiny world)")
        if self.clip_h_weight > 0 and getattr(cfg, "rm_img", "hpsv21") != "hpsv21":
            errors.append(f"v2.clip_h_weight > 0 mixes CLIP-H with HPSv2.1 (rm_img=hpsv21), not {getattr(cfg, 'rm_img', None)}")
        if errors:
            raise V2Error("invalid v2 config: " + "; ".join(errors))

    def cache_dir(self, override: str | Path | None = None) -> Path:
        where = override if override is not None else self.cache
        if where is None:
            raise V2Error("no teacher cache named: set v2.cache=DIR (or pass --out to bench preprocess)")
        return Path(where)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    text = str(annotation)
    if value is None:
        return None
    try:
        if "bool" in text:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes"):
                return True
            if str(value).lower() in ("0", "false", "no"):
                return False
            raise ValueError("expected true/false")
        if text == "int":
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if text == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        return str(value)
    except ValueError as err:
        raise V2Error(f"v2.{key}={value!r}: {err}") from None


def enabled(cfg: Any) -> bool:
    return bool(getattr(cfg, "v2", None))


def recipe(cfg: Any) -> dict[str, Any]:
    """The v2 block as this run resolved it (for run.json's recipe)."""
    return asdict(V2Settings.from_config(cfg))


# --- the student --------------------------------------------------------------------------


def prepare_student(cfg: Any, student: torch.nn.Module) -> torch.nn.Module:
    """Add the motion-condition input (v2.motion_cond) to a freshly built student; no-op for v1."""
    if not enabled(cfg):
        return student
    settings = V2Settings.from_config(cfg)
    if settings.motion_cond:
        from t2v_turbo_core.motion_condition import add_motion_condition

        add_motion_condition(student, init=settings.motion_cond_init)
    return student


def full_finetune(cfg: Any) -> bool:
    """Whether the run trains the whole UNet (v2.finetune=full) rather than LoRA adapters."""
    return enabled(cfg) and V2Settings.from_config(cfg).finetune == "full"


def student_lora(cfg: Any):
    """The LoRA settings `make_student` gets: None for full fine-tuning (every weight trains)."""
    return None if full_finetune(cfg) else cfg.lora_settings()


def temporal_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters inside a temporal transformer (the released temporal lr group)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if type(module).__name__ in TEMPORAL_MODULES:
            names.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters())
    return names


def optimizer_groups(cfg: Any, model: torch.nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters in the released script's two groups: the temporal transformers'
    at lr x v2.temporal_lr_scale, the rest at lr (`lr_scale`: the training loop's warmup
    multiplies each group's scale in). One group of everything where the scale is 1 (v1 too)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scale = V2Settings.from_config(cfg).temporal_lr_scale if enabled(cfg) else 1.0
    if scale == 1.0:  # one group, as before the scale existed (checkpoints stay compatible)
        return [{"params": [p for _, p in trainable], "lr_scale": 1.0, "name": "all"}]
    temporal = temporal_parameter_names(model)
    groups = [{"params": [p for n, p in trainable if n not in temporal], "lr_scale": 1.0, "name": "other"},
              {"params": [p for n, p in trainable if n in temporal], "lr_scale": scale, "name": "temporal"}]
    return [g for g in groups if g["params"]]


def default_sample_steps(cfg: Any, steps: int) -> int:
    """The sampling steps of a run's student when none are asked for: v2.sample_steps for v2."""
    return V2Settings.from_config(cfg).sample_steps if enabled(cfg) else steps


def generation_record(cfg: Any, steps: int, origin_steps: int, spacing: str = "strided") -> dict[str, Any]:
    """What generation.json records of a v2 student's sampling: the motion-condition schedule."""
    if not enabled(cfg):
        return {}
    from t2v_turbo_core.schedule import lcm_timesteps
    from t2v_turbo_core.motion_condition import motion_cond_schedule

    s = V2Settings.from_config(cfg)
    if not s.motion_cond:
        return {"v2_motion_condition": None}
    ts = lcm_timesteps(steps, origin_steps, spacing=spacing)
    return {"v2_motion_condition": {"motion_gs": s.inference_motion_gs, "percentage": s.inference_percentage,
                                    "timesteps": ts, "values": motion_cond_schedule(ts, s.inference_motion_gs, s.inference_percentage)}}


def sampling_student(cfg: Any, student: torch.nn.Module) -> torch.nn.Module:
    """The student as the sampler calls it: with the inference motion-condition schedule (v2)."""
    if not enabled(cfg):
        return student
    settings = V2Settings.from_config(cfg)
    if not settings.motion_cond:
        return student
    from t2v_turbo_core.motion_condition import ScheduledMotionCondition

    return ScheduledMotionCondition(student, settings.inference_motion_gs, settings.inference_percentage)


# --- the cache on disk ------------------------------------------------------------------------


def cache_identity(cfg: Any, settings: V2Settings, num_videos: int) -> dict[str, Any]:
    """What determines the cache's contents; a cache built with other values is refused."""
    return {
        "format": CACHE_FORMAT,
        "teacher": cfg.teacher,
        "skip": cfg.skip,
        "seed": cfg.seed,
        "videos": num_videos,
        "records_per_shard": settings.records_per_shard,
        "record_dtype": settings.record_dtype,
        "tau": settings.tau,
        "data": {k: str(v) for k, v in sorted(dict(cfg.data).items())},
        # Where the short captions (data decoupling) come from: a cache built before the tiny
        # world had a short form holds none, and is refused rather than silently reused.
        "short_captions": "tiny world: subject and action (world.short_caption)" if cfg.teacher == "tiny"
        else "caption file: short_caption / short_text column",
        "weights": {k: str(v) for k, v in sorted(dict(cfg.weights).items())},
    }


def read_manifest(cache: Path) -> dict[str, Any]:
    path = cache / CACHE_MANIFEST
    if not path.is_file():
        raise V2Error(f"{cache} is not a teacher cache (no {CACHE_MANIFEST}); build it with `bench preprocess`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise V2Error(f"{path}: unreadable ({err})") from None


def num_shards(num_videos: int, per_shard: int) -> int:
    return (num_videos + per_shard - 1) // per_shard


def shard_path(cache: Path, shard: int) -> Path:
    return cache / SHARD_PATTERN.format(shard)


def shard_complete(path: Path) -> bool:
    from t2v_turbo_core.safe_io import WeightsFileError, check_safetensors

    try:
        check_safetensors(path)
    except WeightsFileError:
        return False
    return True


def write_shard(path: Path, records: Sequence[Any], captions: Sequence[str], short_captions: Sequence[str],
                video_ids: Sequence[int], dtype: str) -> None:
    """One shard: the records stacked (scores as zeros where a record has none), captions in the
    metadata; written to a temp file and renamed, so a shard is whole or absent."""
    from safetensors.torch import save_file

    from t2v_turbo_core.teacher_cache import collate

    store = getattr(torch, dtype)
    if not records:  # every video of the shard was unusable: a shard of none, so the build moves on
        tensors = {}
        meta = {"captions": "[]", "short_captions": "[]", "videos": "[]"}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return
    batch = collate(records)
    tensors = {
        "index": batch.index.to(torch.int64),
        "noisy_latent": batch.noisy_latent.to(store),
        "eps_cond": batch.eps_cond.to(store),
        "eps_uncond": batch.eps_uncond.to(store),
        "motion_score": batch.motion_score.to(store),
        "use_motion_guide": batch.use_motion_guide.to(torch.uint8),
        "prompt_embedding": batch.prompt_embedding.to(store),
    }
    meta = {"captions": json.dumps(list(captions)), "short_captions": json.dumps(list(short_captions)),
            "videos": json.dumps([int(v) for v in video_ids])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_shard(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    from safetensors import safe_open

    from t2v_turbo_core.safe_io import WeightsFileError, load_safetensors

    try:
        tensors = load_safetensors(path)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        info = {k: json.loads(meta[k]) for k in ("captions", "short_captions", "videos")}
    except (WeightsFileError, KeyError, ValueError) as err:
        raise V2Error(f"teacher cache shard {path} is damaged ({err}); rerun `bench preprocess` to rebuild it") from None
    return tensors, info


def _shard_rows(path: Path) -> int:
    return len(shard_videos(path))


def shard_videos(path: Path) -> list[int]:
    """The video numbers a shard holds records of (its header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return [int(v) for v in json.loads((f.metadata() or {})["videos"])]
    except (KeyError, ValueError, OSError) as err:
        raise V2Error(f"teacher cache shard {path} is damaged ({err}); rerun `bench preprocess` to rebuild it") from None


class CacheBatches:
    """Batches of cache records, a pure function of (seed, step, rank): resuming at step s sees the
    batches an uninterrupted run would have seen. Shards are read on demand (a few kept)."""

    def __init__(self, cfg: Any, settings: V2Settings, rank: int = 0, world: int = 1, keep_shards: int = 4):
        self.cache = settings.cache_dir()
        manifest = read_manifest(self.cache)
        identity = manifest.get("identity", {})
        n = int(identity.get("videos", 0))
        self.per_shard = int(identity.get("records_per_shard", 1))
        for key in ("teacher", "skip"):
            if identity.get(key) != getattr(cfg, key):
                raise V2Error(f"{self.cache} was built for {key}={identity.get(key)!r}, this config has {key}={getattr(cfg, key)!r}")
        if settings.motion_gs > 0 and float(identity.get("tau", -1)) != settings.tau:
            raise V2Error(f"{self.cache} has motion scores for tau={identity.get('tau')}, this config trains with v2.tau={settings.tau}")
        missing = [shard_path(self.cache, s).name for s in range(num_shards(n, self.per_shard))
                   if not shard_complete(shard_path(self.cache, s))]
        if n < 1 or missing:
            raise V2Error(f"teacher cache {self.cache} is incomplete ({len(missing)} shard(s) missing: {', '.join(missing[:4])}); "
                          "finish it with `bench preprocess` (it resumes)")
        # (shard, row) of every record: a shard holds fewer rows where videos could not be used.
        self.entries = [(s, r) for s in range(num_shards(n, self.per_shard)) for r in range(_shard_rows(shard_path(self.cache, s)))]
        self.num_videos, self.seed, self.rank, self.world = len(self.entries), cfg.seed, rank, world
        if not self.entries:
            raise V2Error(f"teacher cache {self.cache} holds no records (no video could be used)")
        self.keep_shards = keep_shards
        self._shards: dict[int, tuple[dict, dict]] = {}
        self.decouple = settings.decouple_rewards

    def _shard(self, s: int):
        if s not in self._shards:
            if len(self._shards) >= self.keep_shards:
                self._shards.pop(next(iter(self._shards)))
            self._shards[s] = read_shard(shard_path(self.cache, s))
        return self._shards[s]

    def __call__(self, step: int, batch_size: int, device) -> tuple[Any, tuple[list[str], list[str] | None]]:
        from t2v_turbo_core.teacher_cache import TeacherTargetBatch

        rng = np.random.default_rng([self.seed, 7004, step])
        order = rng.permutation(self.num_videos)
        start = (step * self.world + self.rank) * batch_size
        picks = [int(order[(start + i) % self.num_videos]) for i in range(batch_size)]
        rows: dict[str, list[torch.Tensor]] = {}
        captions, shorts = [], []
        for v in picks:
            s, r = self.entries[v]
            tensors, info = self._shard(s)
            for k, t in tensors.items():
                rows.setdefault(k, []).append(t[r])
            captions.append(info["captions"][r])
            shorts.append(info["short_captions"][r])

        def stack(k, dtype=torch.float32):
            return torch.stack(rows[k]).to(device=device, dtype=dtype)

        batch = TeacherTargetBatch(
            index=torch.stack(rows["index"]).long(), noisy_latent=stack("noisy_latent"), eps_cond=stack("eps_cond"),
            eps_uncond=stack("eps_uncond"), motion_score=stack("motion_score"),
            use_motion_guide=torch.stack(rows["use_motion_guide"]).bool(), prompt_embedding=stack("prompt_embedding"),
        )
        return batch, (captions, shorts if self.decouple else None)


# --- training -------------------------------------------------------------------------------

CLIP_H_ENV = "CLIP_H_CKPT"
CLIP_H_DEFAULT = Path("~/.cache/t2v_turbo/CLIP-ViT-H-14-laion2B-s32B-b79K/open_clip_pytorch_model.bin")


def image_reward(cfg: Any, image_rm: Any, device: Any) -> Any:
    """The v2 image reward: HPSv2.1 alone, or the released mix a HPSv2.1 + b CLIP-H (v2.clip_h_weight > 0)."""
    if not enabled(cfg) or image_rm is None:
        return image_rm
    s = V2Settings.from_config(cfg)
    if s.clip_h_weight <= 0:
        return image_rm
    from bench.components import architectures
    from t2v_turbo_core.clip_h import WeightedImageReward, load_clip_h

    where = cfg.weights.get("clip_h") or os.environ.get(CLIP_H_ENV) or str(CLIP_H_DEFAULT)
    path = Path(str(where)).expanduser()
    if not path.is_file():
        raise V2Error(f"CLIP-H weights not found: {path} (looked at weights.clip_h, ${CLIP_H_ENV}, then {CLIP_H_DEFAULT}); "
                      "get open_clip_pytorch_model.bin from laion/CLIP-ViT-H-14-laion2B-s32B-b79K, or set v2.clip_h_weight=0")
    try:
        clip = load_clip_h(path, device=device, model_cfg=architectures(cfg).get("hpsv21"))
    except ValueError as err:
        raise V2Error(str(err)) from None
    return WeightedImageReward([image_rm, clip], [s.hpsv21_weight, s.clip_h_weight])


def make_cache_distiller(cfg: Any, teacher: Any, student: torch.nn.Module, image_rm: Any, video_rm: Any):
    """The v2 distiller: Algorithm 1 on cache records (no teacher forward), `bench train`'s step()."""
    from t2v_turbo_core.teacher_cache import CachedConsistencyDistiller

    settings = V2Settings.from_config(cfg)

    class _TrainStep(CachedConsistencyDistiller):
        # bench train calls step(latents, text, prompts, generator); here "latents" is the
        # cache batch and `prompts` is (long captions, short captions or None).
        def step(self, batch, text=None, prompts=None, generator=None):  # type: ignore[override]
            long, short = prompts if prompts is not None else (None, None)
            return self.step_from_records(batch, long, generator=generator, reward_prompts=short)

    # A LoRA student's teacher is itself with the adapters off; v2 never runs the teacher in
    # training (the cache holds its outputs), so a fully fine-tuned student needs no frozen
    # copy either; its target is the online student (target=online: no target network) or EMA.
    return _TrainStep(student, teacher.schedule, cfg.distillation_config(), vae=teacher.vae, image_reward=image_rm,
                      video_reward=video_rm, unet_kwargs=teacher.unet_kwargs, motion_gs=settings.motion_gs,
                      tau=settings.tau, coefficient=settings.coefficient)
