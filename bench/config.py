"""Training configs: a YAML file per teacher (`bench/configs/{tiny,ms,vc2}.yaml`) plus
`key=value` overrides from the command line (torchtune style). Every value is validated
before anything runs; a bad value is a clear error naming the key.

A `TrainConfig` is frozen and made of sections, each the dataclass of the code that uses it:

  distill   t2v_turbo_core.distillation.DistillationConfig (Algorithm 1, the reward mix)
  lora      t2v_turbo_core.lora.LoraSettings (the student's adapter, its w projection)
  optim     OptimSettings (bench/train.py's optimiser, schedule, batch, memory)
  io        IOSettings (logging, checkpoints, which weights are exported)

beside the run's identity (teacher, variant, reward models, seed) and its inputs (data,
weights, and the T2V-Turbo-v2 block, whose keys bench/v2.py owns). Each default lives in its
section's dataclass; the only one bench changes is mixed precision (bf16 for training runs).

Keys are written flat, as the README, docs and YAML files do (`lr=1e-3`, `lora_rank=16`,
`skip=5`: the table `FLAT_KEYS`), or by section (`optim.lr=1e-3`, `lora.rank=16`, a YAML
`distill:` mapping). The flat names are also what run.json records ("config"), so every
reader of a manifest, old or new, sees the same keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2v_turbo_core.distillation import DistillationConfig
from t2v_turbo_core.lora import LoraSettings
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


class FrozenMapping(dict):
    """A read-only dict: the data / weights / v2 blocks of a frozen config (a dict, so JSON,
    `dict(...)` and `isinstance(x, dict)` keep working; pickles for ablate's workers)."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config's mappings are read-only; make a new config (bench.config.with_values)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __reduce__(self):
        return (FrozenMapping, (dict(self),))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return FrozenMapping({k: _thaw(v) for k, v in self.items()})


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, FrozenMapping):
        return FrozenMapping({k: _freeze(v) for k, v in value.items()})
    return value


def _thaw(value: Any) -> Any:
    """A plain, mutable copy (what run.json and the trackers get)."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser, its schedule and what one step costs in memory (bench/train.py)."""

    steps: int = 10_000
    batch_size: int = 1
    lr: float = 1e-5
    lr_warmup: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adamw8bit (bitsandbytes, as the released code; not a dependency)
    grad_checkpointing: bool = False  # the student UNet's own gradient checkpointing (VC2)


@dataclass(frozen=True)
class IOSettings:
    """What a run writes: its log, its checkpoints, and which weights become its student."""

    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    # which weights become the run's student (student/adapter.safetensors): the online theta,
    # or (target=ema only) the EMA theta^-
    export_weights: str = "online"


def _training_distillation() -> DistillationConfig:
    # The core's defaults (the paper's VideoCrafter2 setting), trained in bf16 where CUDA is.
    return DistillationConfig(mixed_precision="bf16")


@dataclass(frozen=True)
class TrainConfig:
    """One training run of the ablation. Defaults are the paper's VideoCrafter2 setting (the
    sections' own); the shipped YAML files set what each teacher changes.

    Flat names read through to their section (`cfg.lr` is `cfg.optim.lr`; `FLAT_KEYS`).
    """

    teacher: str = "vc2"
    variant: str = "vcm+img+vid"
    rm_vid: str = "internvid2"
    rm_img: str = "hpsv21"  # hpsv21 | pickscore (real); image (tiny)
    seed: int = 0
    distill: DistillationConfig = field(default_factory=_training_distillation)
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    io: IOSettings = field(default_factory=IOSettings)
    # data and weights for real teachers (paths; the tiny world needs none)
    data: Mapping[str, Any] = field(default_factory=FrozenMapping)
    weights: Mapping[str, Any] = field(default_factory=FrozenMapping)
    # T2V-Turbo-v2: training from a precomputed teacher cache (keys: bench/v2.py); empty for v1
    v2: Mapping[str, Any] = field(default_factory=FrozenMapping)

    def __post_init__(self):
        for name in MAPPINGS:
            object.__setattr__(self, name, _freeze(getattr(self, name)))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: the flat aliases of section fields.
        path = FLAT_KEYS.get(name)
        if path is None or path[0] is None:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        return getattr(object.__getattribute__(self, path[0]), path[1])

    # --- derived ---------------------------------------------------------------------------
    @property
    def uses_image_reward(self) -> bool:
        return "img" in self.variant.split("+")

    @property
    def uses_video_reward(self) -> bool:
        return "vid" in self.variant.split("+")

    def distillation_config(self) -> DistillationConfig:
        """The distill section as Algorithm 1 runs it: a reward the variant does not use weighs 0."""
        return dataclasses.replace(
            self.distill,
            beta_img=self.distill.beta_img if self.uses_image_reward else 0.0,
            beta_vid=self.distill.beta_vid if self.uses_video_reward else 0.0,
        )

    def lora_settings(self) -> LoraSettings:
        return self.lora

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
            "lora_forward": self.distill.lora_forward,
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
        if self.grad_checkpointing and self.teacher not in GRAD_CHECKPOINTING_TEACHERS:
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


# --- the keys -------------------------------------------------------------------------------

SECTIONS = {"distill": DistillationConfig, "lora": LoraSettings, "optim": OptimSettings, "io": IOSettings}
MAPPINGS = ("data", "weights", "v2")  # free-form blocks: `data.annotations=...` sets one of their keys
# Fixed by the models, not training knobs: the student's w embedding width, the consistency
# boundary conditions' sigma_data and timestep scaling (kept at the core's values, not recorded).
FIXED = {("distill", "guidance_embedding_dim"), ("distill", "sigma_data"), ("distill", "timestep_scaling")}
# Flat name -> (section, field); section None: a field of TrainConfig itself. In run.json's order.
FLAT_KEYS: dict[str, tuple[str | None, str]] = {
    "teacher": (None, "teacher"), "variant": (None, "variant"), "rm_vid": (None, "rm_vid"), "rm_img": (None, "rm_img"),
    **{k: ("optim", k) for k in ("steps", "batch_size", "lr", "lr_warmup", "max_grad_norm", "weight_decay")},
    "seed": (None, "seed"),
    "mixed_precision": ("distill", "mixed_precision"),
    **{f"lora_{k}": ("lora", k) for k in ("rank", "alpha", "dropout")},
    **{k: ("distill", k) for k in ("skip", "w_min", "w_max", "loss_type", "huber_c", "target", "ema_decay")},
    "export_weights": ("io", "export_weights"),
    **{k: ("distill", k) for k in ("beta_img", "beta_vid", "reward_weighting", "image_reward_frames", "video_reward_frames")},
    "w_proj_init": ("lora", "w_proj_init"),
    **{k: ("optim", k) for k in ("grad_checkpointing", "optimizer")},
    **{k: ("io", k) for k in ("checkpoint_every", "keep_checkpoints", "log_every")},
    "lora_forward": ("distill", "lora_forward"),
    **{k: (None, k) for k in MAPPINGS},
}
# A section field added later without a flat name is set, and recorded in run.json, by its
# section name (`distill.new_field`).
KEYS: dict[str, tuple[str | None, str]] = {
    **FLAT_KEYS,
    **{f"{s}.{f.name}": (s, f.name) for s, c in SECTIONS.items() for f in dataclasses.fields(c)
       if (s, f.name) not in FIXED and (s, f.name) not in FLAT_KEYS.values()},
}
# Every key a config accepts, flat or by section (`optim.lr`), -> its (section, field).
PATHS: dict[str, tuple[str | None, str]] = {**KEYS, **{f"{s}.{f}": (s, f) for s, f in KEYS.values() if s}}


def _declared_types() -> dict[tuple[str | None, str], Any]:
    hints = {(None, name): tp for name, tp in typing.get_type_hints(TrainConfig).items()}
    for section, cls in SECTIONS.items():
        hints.update({(section, name): tp for name, tp in typing.get_type_hints(cls).items()})
    return {path: hints[path] for path in KEYS.values()}


def _kinds(annotation: Any) -> set:
    """The types a declared annotation allows ({int, NoneType} for `int | None`)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set().union(*(_kinds(a) for a in typing.get_args(annotation)))
    origin = typing.get_origin(annotation)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return {Mapping}
    return {annotation}


KINDS: dict[tuple[str | None, str], set] = {path: _kinds(tp) for path, tp in _declared_types().items()}


def _path(key: str) -> tuple[str | None, str]:
    path = PATHS.get(key)
    if path is None:
        raise ConfigError(f"unknown config key {key!r}; known: {', '.join(sorted(KEYS))}")
    return path


def flat_name(path: tuple[str | None, str]) -> str:
    """The name a key is recorded under: its flat name, else `section.field`."""
    return next(k for k, p in KEYS.items() if p == path)


def get_value(cfg: TrainConfig, path: tuple[str | None, str]) -> Any:
    section, name = path
    return getattr(cfg if section is None else getattr(cfg, section), name)


def with_values(cfg: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """A new config with `values` (flat or dotted section keys) in place; values are not checked
    here (`validate` does that, with every problem at once)."""
    top: dict[str, Any] = {}
    per_section: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, name = _path(key)
        if section is None:
            top[name] = value
        else:
            per_section.setdefault(section, {})[name] = value
    for section, changes in per_section.items():
        try:
            top[section] = dataclasses.replace(getattr(cfg, section), **changes)
        except (TypeError, ValueError) as err:  # LoraSettings checks w_proj_init when it is made
            raise ConfigError(f"invalid config: {err}") from err
    return dataclasses.replace(cfg, **top)


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
    """Every key against its declared type (a YAML `1e-5` is a string); numbers finite, in range."""
    from bench.validate import number_problem

    errors = []
    for name, path in KEYS.items():
        value, kinds = get_value(cfg, path), KINDS[path]
        if value is None and type(None) in kinds:
            continue
        if kinds & {int, float}:
            lo, hi, lo_open, hi_open = NUMERIC_RANGES.get(name, (None, None, False, False))
            problem = number_problem(value, lo, hi, lo_open=lo_open, hi_open=hi_open, integer=float not in kinds)
            if problem:
                errors.append(f"{name}={value!r} {problem}")
        elif kinds == {str} and not isinstance(value, str):
            errors.append(f"{name}={value!r} must be a string")
        elif kinds == {bool} and not isinstance(value, bool):
            errors.append(f"{name}={value!r} must be true or false")
        elif kinds == {Mapping} and not isinstance(value, Mapping):
            errors.append(f"{name}={value!r} must be a mapping")
    return errors


def _coerce(value: str, path: tuple[str | None, str], key: str, current: Any = None) -> Any:
    """A command-line string as the key's declared type (that of its current value); a clear
    error where it is not one."""
    kinds = KINDS[path]
    if value.lower() in ("none", "null") and type(None) in kinds:
        return None
    try:
        if Mapping in kinds:
            parsed = yaml.safe_load(value)
            if not isinstance(parsed, dict):
                raise ValueError("expected a mapping")
            return parsed
        if bool in kinds:
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError("expected true/false")
        if int in kinds and float not in kinds:
            return int(value)
        if float in kinds:
            return float(value)
        return value
    except ValueError as err:
        wanted = " or ".join(sorted(_KIND_NAMES.get(k, getattr(k, "__name__", str(k))) for k in kinds))
        raise ConfigError(f"{key}={value!r}: expected {wanted} (like the current value {current!r}): {err}") from err


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string", Mapping: "a mapping",
               type(None): "none"}


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """`key=value` pairs (flat, or by section: `optim.lr=1e-3`); a key of a free-form block as
    `data.annotations=/path`, `weights.hpsv21=/p` or `v2.motion_gs=0`."""
    updates: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        top, _, sub = key.partition(".")
        if sub and top in MAPPINGS:
            nested = dict(updates.get(top, getattr(cfg, top)))
            nested[sub] = value
            updates[top] = nested
            continue
        if sub and top not in SECTIONS:
            raise ConfigError(f"unknown config key {key!r}")
        path = _path(key)
        updates[flat_name(path)] = _coerce(value, path, key, get_value(cfg, path))
    return with_values(cfg, updates)


def _flatten(raw: Mapping[str, Any], where: str, strict: bool = True) -> dict[str, Any]:
    """A YAML or run.json mapping -> flat keys; a section may be written as a nested mapping
    (`distill: {skip: 5}`). strict: an unknown key is an error (else it is dropped: a
    manifest written by another version)."""
    flat: dict[str, Any] = {}
    unknown = []
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for sub, v in value.items():
                path = PATHS.get(f"{key}.{sub}")
                if path is None:
                    unknown.append(f"{key}.{sub}")
                else:
                    flat[flat_name(path)] = v
        elif key in PATHS:
            flat[flat_name(PATHS[key])] = value
        else:
            unknown.append(str(key))
    if unknown and strict:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return flat


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
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(raw).__name__}")
    values = _flatten(raw, str(path))
    values.update({k: v for k, v in explicit.items() if v is not None})
    cfg = with_values(TrainConfig(), values)
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
    """The resolved config under its flat names (what run.json records as "config")."""
    return {name: _thaw(get_value(cfg, path)) for name, path in KEYS.items()}


# Keys whose default is not what a run made before the key existed did: such a run, read back
# from its run.json, gets the value it ran with. (Peft's layer forward was the only one then.)
BEFORE_THE_KEY: dict[str, Any] = {"lora_forward": "adapter"}


def config_from_dict(d: Mapping[str, Any]) -> TrainConfig:
    """A config back from run.json; keys it does not know are dropped, keys it lacks (a run made
    before they existed) take their defaults, as that run did (`BEFORE_THE_KEY` where that
    differs from today's default)."""
    flat = _flatten(d, "run.json config", strict=False)
    return with_values(TrainConfig(), {**BEFORE_THE_KEY, **flat})
