"""Training configs: a YAML file per teacher (`bench/configs/{tiny,ms,vc2}.yaml`) plus
`key=value` overrides from the command line (torchtune style). Every value is validated
before anything runs; a bad value is a clear error naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from t2v_turbo_core.rewards import DEFAULT_IMAGE_REWARD_FRAMES
from bench import models as MODELS
from bench.errors import BenchError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
VARIANTS = ("vcm", "vcm+img", "vcm+vid", "vcm+img+vid")
VIDEO_RMS = tuple(MODELS.VIDEO_REWARDS)  # ("viclip", "internvid2"): bench/models.py
IMAGE_RMS = tuple(MODELS.IMAGE_REWARDS)
TEACHERS = tuple(MODELS.TEACHERS)
OPTIMIZERS = ("adamw", "adamw8bit")
EXPORT_WEIGHTS = ("online", "ema")
# Teachers whose UNet implements gradient checkpointing (diffusers' UNet3DConditionModel, the
# ModelScope and tiny teachers' class, declares it unsupported).
GRAD_CHECKPOINTING_TEACHERS = ("vc2",)


class ConfigError(BenchError, ValueError):
    """A config file, key or value that cannot be used (exit 2)."""


@dataclass
class TrainConfig:
    """One training run of the ablation. Defaults are the paper's VideoCrafter2 setting;
    the shipped YAML files set each teacher's values."""

    teacher: str = "vc2"
    variant: str = "vcm+img+vid"
    rm_vid: str = "internvid2"
    rm_img: str = "hpsv21"  # hpsv21 | pickscore (real); image (tiny)
    # optimisation
    steps: int = 10_000
    batch_size: int = 1
    lr: float = 1e-5
    lr_warmup: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    mixed_precision: str = "bf16"
    # student
    lora_rank: int = 64
    lora_alpha: float | None = None
    lora_dropout: float = 0.1
    # Algorithm 1
    skip: int = 20  # k in raw timesteps (N = 1000 // k)
    w_min: float = 5.0
    w_max: float = 15.0
    loss_type: str = "huber"
    huber_c: float = 0.001
    target: str = "ema"  # ema (paper, Algorithm 1) | online (released code: the student, no grad)
    ema_decay: float = 0.95
    # which weights become the run's student (student/adapter.safetensors): the online theta,
    # or (target=ema only) the EMA theta^-
    export_weights: str = "online"
    # mixed reward feedback
    beta_img: float = 1.0
    beta_vid: float = 2.0
    # paper: per-sample L_CD - beta_img R_img - beta_vid R_vid; released: the released code's
    # 6/8 process split, emulated per step (see docs/recipe.md)
    reward_weighting: str = "paper"
    image_reward_frames: int = DEFAULT_IMAGE_REWARD_FRAMES  # M (paper 6, released v1 code 5)
    video_reward_frames: int | None = None  # None: the video RM's own (ViCLIP 8, InternVid2 4)
    # the student's w projection: zero (trained, starts as the teacher) | released (random, frozen, LoRA)
    w_proj_init: str = "zero"
    # memory
    grad_checkpointing: bool = False  # the student UNet's own gradient checkpointing (VC2)
    optimizer: str = "adamw"  # adamw | adamw8bit (bitsandbytes, as the released code; not a dependency)
    # bookkeeping
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    # data and weights for real teachers (paths; the tiny world needs none)
    data: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    # T2V-Turbo-v2: training from a precomputed teacher cache (keys: bench/v2.py); empty for v1
    v2: dict[str, Any] = field(default_factory=dict)

    # --- derived ---------------------------------------------------------------------------
    @property
    def uses_image_reward(self) -> bool:
        return "img" in self.variant.split("+")

    @property
    def uses_video_reward(self) -> bool:
        return "vid" in self.variant.split("+")

    def distillation_config(self):
        from t2v_turbo_core.distillation import DistillationConfig

        return DistillationConfig(
            skip=self.skip, w_min=self.w_min, w_max=self.w_max, loss_type=self.loss_type, huber_c=self.huber_c,
            target=self.target, ema_decay=self.ema_decay,
            beta_img=self.beta_img if self.uses_image_reward else 0.0,
            beta_vid=self.beta_vid if self.uses_video_reward else 0.0,
            reward_weighting=self.reward_weighting,
            image_reward_frames=self.image_reward_frames, video_reward_frames=self.video_reward_frames,
            mixed_precision=self.mixed_precision,
        )

    def lora_settings(self):
        from t2v_turbo_core.lora import LoraSettings

        return LoraSettings(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout, w_proj_init=self.w_proj_init)

    def recipe(self) -> dict[str, Any]:
        """The conventions where the paper and the released code differ, as this run resolved
        them (written to run.json beside the full config; docs/recipe.md has the table)."""
        from t2v_turbo_core.distillation import effective_loss_weights

        cd, img, vid = effective_loss_weights(self.distillation_config())
        return {
            "target": self.target,
            "export_weights": self.export_weights,
            "reward_weighting": self.reward_weighting,
            "effective_weights_cd_img_vid": [cd, img, round(vid, 6)],
            "image_reward_frames": self.image_reward_frames,
            "video_reward_frames": self.video_reward_frames,
            "w_proj_init": self.w_proj_init,
            "grad_checkpointing": self.grad_checkpointing,
            "optimizer": self.optimizer,
            **({"v2": _v2_recipe(self)} if self.v2 else {}),
        }

    def validate(self) -> None:
        errors = _type_and_range_errors(self)
        if errors:  # a value of the wrong type or NaN/inf would break the comparisons below
            raise ConfigError("invalid config: " + "; ".join(errors))
        if self.teacher not in TEACHERS:
            errors.append(f"teacher={self.teacher!r} (one of {', '.join(TEACHERS)})")
        if self.variant not in VARIANTS:
            errors.append(f"variant={self.variant!r} (one of {', '.join(VARIANTS)})")
        if self.rm_vid not in VIDEO_RMS:
            errors.append(f"rm_vid={self.rm_vid!r} (one of {', '.join(VIDEO_RMS)})")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "lora_rank", "keep_checkpoints"):
            if getattr(self, name) < 1:
                errors.append(f"{name}={getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            errors.append(f"lr={self.lr} must be > 0")
        if self.lr_warmup < 0:
            errors.append(f"lr_warmup={self.lr_warmup} must be >= 0")
        if not 0 <= self.lora_dropout < 1:
            errors.append(f"lora_dropout={self.lora_dropout} must be in [0, 1)")
        if self.mixed_precision not in ("no", "bf16"):
            errors.append(f"mixed_precision={self.mixed_precision!r} (no or bf16)")
        if self.optimizer not in OPTIMIZERS:
            errors.append(f"optimizer={self.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
        if self.export_weights not in EXPORT_WEIGHTS:
            errors.append(f"export_weights={self.export_weights!r} (one of {', '.join(EXPORT_WEIGHTS)})")
        elif self.export_weights == "ema" and self.target != "ema":
            errors.append("export_weights=ema needs target=ema (with target=online there are no EMA weights)")
        if self.w_proj_init not in ("zero", "released"):
            errors.append(f"w_proj_init={self.w_proj_init!r} (zero or released)")
        if not isinstance(self.grad_checkpointing, bool):
            errors.append(f"grad_checkpointing={self.grad_checkpointing!r} (true or false)")
        elif self.grad_checkpointing and self.teacher not in GRAD_CHECKPOINTING_TEACHERS:
            errors.append(f"grad_checkpointing=true: the {self.teacher} student's UNet (diffusers' UNet3DConditionModel) "
                          f"has no gradient checkpointing; only {', '.join(GRAD_CHECKPOINTING_TEACHERS)} supports it")
        if self.video_reward_frames is not None and self.video_reward_frames < 1:
            errors.append(f"video_reward_frames={self.video_reward_frames} must be >= 1 (or none: the model's own)")
        elif self.teacher != "tiny" and self.video_reward_frames is not None:
            # ViCLIP's temporal embedding has 8 positions; InternVideo2's table is 4, interpolated to 8 by v1.
            allowed = {"viclip": (8,), "internvid2": (4, 8)}.get(self.rm_vid, ())
            if self.video_reward_frames not in allowed:
                errors.append(f"video_reward_frames={self.video_reward_frames}: {self.rm_vid} takes {' or '.join(map(str, allowed))} frames")
        if self.v2:
            from bench.v2 import V2Error, V2Settings

            try:
                V2Settings.from_config(self)
            except V2Error as err:
                errors.append(str(err))
        if errors:
            raise ConfigError("invalid config: " + "; ".join(errors))
        try:
            self.distillation_config().validate()
        except ValueError as err:
            raise ConfigError(str(err)) from err


def _v2_recipe(cfg: "TrainConfig") -> dict[str, Any]:
    from bench.v2 import recipe

    return recipe(cfg)


# Ranges of the numeric keys (lo, hi, lo_open, hi_open); None: unbounded on that side.
# Every other int/float key is still checked for its type and for being finite.
NUMERIC_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "lr": (0, 1, True, False),
    "max_grad_norm": (0, None, True, False),
    "weight_decay": (0, None, False, False),
    "seed": (0, 2**63 - 1, False, False),
    "lora_alpha": (0, None, True, False),
    "w_min": (0, None, False, False),
    "w_max": (0, None, False, False),
    "huber_c": (0, None, True, False),
    "ema_decay": (0, 1, False, True),
    "beta_img": (0, None, False, False),
    "beta_vid": (0, None, False, False),
    "image_reward_frames": (1, None, False, False),
    "video_reward_frames": (1, None, False, False),
    "skip": (1, 1000, False, False),
}


def _type_and_range_errors(cfg: "TrainConfig") -> list[str]:
    """Every int/float key: of its declared type (a YAML `1e-5` is a string), finite, in range."""
    from bench.validate import number_problem

    errors = []
    for f in fields(cfg):
        value, text = getattr(cfg, f.name), str(f.type)
        if value is None and "None" in text:
            continue
        kinds = {t.strip() for t in text.replace("Optional[", "").replace("]", "").split("|")}
        if kinds & {"int", "float"}:
            integer = "float" not in kinds
            lo, hi, lo_open, hi_open = NUMERIC_RANGES.get(f.name, (None, None, False, False))
            problem = number_problem(value, lo, hi, lo_open=lo_open, hi_open=hi_open, integer=integer)
            if problem:
                errors.append(f"{f.name}={value!r} {problem}")
        elif kinds == {"str"} and not isinstance(value, str):
            errors.append(f"{f.name}={value!r} must be a string")
        elif kinds == {"bool"} and not isinstance(value, bool):
            errors.append(f"{f.name}={value!r} must be true or false")
        elif text.startswith("dict") and not isinstance(value, dict):
            errors.append(f"{f.name}={value!r} must be a mapping")
    return errors


def _coerce(value: str, annotation: Any, key: str) -> Any:
    text = str(annotation)
    if value.lower() in ("none", "null") and ("None" in text or "Optional" in text):
        return None
    try:
        if "dict" in text:
            parsed = yaml.safe_load(value)
            if not isinstance(parsed, dict):
                raise ValueError("expected a mapping")
            return parsed
        if "bool" in text:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError("expected true/false")
        if "int" in text and "float" not in text:
            return int(value)
        if "float" in text:
            return float(value)
        return value
    except ValueError as err:
        raise ConfigError(f"{key}={value!r}: {err}") from err


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """`key=value` pairs; nested data/weights keys as `data.csv=/path` or `weights.hpsv21=/p`."""
    known = {f.name: f for f in fields(TrainConfig)}
    updates: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if "." in key:
            top, sub = key.split(".", 1)
            if top not in ("data", "weights", "v2"):
                raise ConfigError(f"unknown config key {key!r}")
            nested = dict(updates.get(top, getattr(cfg, top)))
            nested[sub] = value
            updates[top] = nested
            continue
        if key not in known:
            raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(known))}")
        updates[key] = _coerce(value, known[key].type, key)
    return dataclasses.replace(cfg, **updates)


def load_config(name_or_path: str | Path = "tiny", overrides: list[str] | None = None, **explicit: Any) -> TrainConfig:
    """A shipped config by name (tiny, ms, vc2) or a YAML path, then explicit values, then
    key=value overrides; validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"config not found: {path} (shipped configs: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    cfg = TrainConfig(**raw)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in explicit.items() if v is not None})
    cfg = apply_overrides(cfg, overrides or [])
    cfg = canonical_names(cfg)
    cfg.validate()
    return cfg


def canonical_names(cfg: TrainConfig) -> TrainConfig:
    """Model names as the registry spells them (an alias such as rm_vid=internvideo2 -> internvid2)."""
    names = {"teacher": MODELS.canonical(cfg.teacher, MODELS.TEACHERS) if isinstance(cfg.teacher, str) else cfg.teacher,
             "rm_img": MODELS.canonical(cfg.rm_img, MODELS.IMAGE_REWARDS) if isinstance(cfg.rm_img, str) else cfg.rm_img,
             "rm_vid": MODELS.canonical(cfg.rm_vid, MODELS.VIDEO_REWARDS) if isinstance(cfg.rm_vid, str) else cfg.rm_vid}
    changed = {k: v for k, v in names.items() if v != getattr(cfg, k)}
    return dataclasses.replace(cfg, **changed) if changed else cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})
