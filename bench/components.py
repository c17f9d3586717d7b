"""Real components for a training config: the `ms` / `vc2` teachers and the paper's reward models.

Weight files are found by `bench.weights.resolve_weights` (config `weights.<name>` paths, then
environment variables, then the offline Hugging Face cache); anything missing is one error
that lists every file and where it was looked for. Nothing is ever downloaded.

The networks are built at the sizes of the official checkpoints. A checkpoint of another size
(a reduced model; the tests' random-weight miniatures) needs `weights.architectures=FILE.yaml`,
whose sections give the loaders' configs:

  videocrafter2: {unet: {VideoCrafter2UNetConfig fields}, vae_ddconfig: {...}, text_model_cfg:
                  {open_clip model config}, latent_hw: [h, w], ...}  (VideoCrafter2Config fields)
  hpsv21:        {open_clip model config: embed_dim, vision_cfg, text_cfg}
  viclip:        {ViCLIPConfig fields}
  internvideo2:  {InternVideo2Config fields}

ModelScope and PickScore need none: their folders carry their own config.json.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from bench import models as MODELS
from bench.errors import BenchError
from bench.config import TrainConfig


class ComponentLoadError(BenchError, ValueError):
    """A weight file that is there but does not fit (another model, another size), or a bad
    `weights.architectures` file: bad input, reported without a traceback (exit code 2)."""


ARCHITECTURES_HINT = ("(a checkpoint of another size than the official one needs weights.architectures=FILE.yaml; "
                      "see docs/real-checkpoints.md)")


@contextlib.contextmanager
def _loading(what: str, path: Any) -> Iterator[None]:
    """Name the model and file when a loader refuses a checkpoint (its weights do not fit)."""
    try:
        yield
    except ComponentLoadError:
        raise
    except ValueError as err:
        raise ComponentLoadError(f"{what} from {path}: {err}\n{ARCHITECTURES_HINT}") from err


def _explicit(cfg: TrainConfig, names) -> dict[str, Any]:
    return {n: cfg.weights[n] for n in names if cfg.weights.get(n)}


ARCHITECTURE_SECTIONS = ("videocrafter2", "hpsv21", "viclip", "internvideo2")


def architectures(cfg: TrainConfig) -> dict[str, dict]:
    """The sections of `weights.architectures` (empty when the key is not set: full sizes)."""
    import yaml

    path = cfg.weights.get("architectures")
    if not path:
        return {}
    from pathlib import Path

    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights.architectures: no such file: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ComponentLoadError(f"weights.architectures {path}: not valid YAML: {err}") from err
    unknown = sorted(set(raw) - set(ARCHITECTURE_SECTIONS)) if isinstance(raw, dict) else ["(not a mapping)"]
    if unknown or not all(isinstance(v, dict) for v in raw.values()):
        raise ComponentLoadError(f"weights.architectures {path}: sections must be mappings named {', '.join(ARCHITECTURE_SECTIONS)}; "
                         f"got {', '.join(unknown) or 'a non-mapping section'}")
    return raw


def _dataclass_from(cls, values: dict, where: str):
    """`cls(**values)` with YAML lists turned into the tuples the configs use; bad keys named."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ComponentLoadError(f"weights.architectures [{where}]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def videocrafter2_config(arch: dict):
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNetConfig
    from t2v_turbo_core.teachers import VideoCrafter2Config

    section = dict(arch.get("videocrafter2") or {})
    if not section:
        return VideoCrafter2Config()
    if "unet" in section:
        section["unet"] = _dataclass_from(VideoCrafter2UNetConfig, section["unet"], "videocrafter2.unet")
    for key in ("vae_ddconfig", "text_model_cfg"):  # plain mappings (LDM ddconfig, open_clip config)
        if key in section and not isinstance(section[key], dict):
            raise ComponentLoadError(f"weights.architectures [videocrafter2.{key}] must be a mapping")
    return _dataclass_from(VideoCrafter2Config, section, "videocrafter2")


def load_real_teacher(cfg: TrainConfig, device: str | torch.device = "cpu"):
    """The `ms` or `vc2` teacher bundle; its `make_student` builds the LoRA student."""
    from bench.weights import resolve_weights, teacher_requirements
    from t2v_turbo_core.teachers import load_modelscope, load_videocrafter2

    required = teacher_requirements(cfg.teacher)
    paths = resolve_weights(required, explicit=_explicit(cfg, required))
    (name,) = required
    if cfg.teacher == "ms":
        with _loading("the ModelScopeT2V teacher", paths[name]):
            return load_modelscope(paths[name], device=device)
    if cfg.teacher == "vc2":
        config = videocrafter2_config(architectures(cfg))
        with _loading("the VideoCrafter2 teacher", paths[name]):
            return load_videocrafter2(paths[name], device=device, config=config)
    raise ValueError(f"no real teacher named {cfg.teacher!r}")


# The real reward models by config name (the registry: bench/models.py).
IMAGE_REWARDS = tuple(name for name, spec in MODELS.IMAGE_REWARDS.items() if not spec.tiny)
VIDEO_REWARDS = {name: spec.weights[0] for name, spec in MODELS.VIDEO_REWARDS.items()}


def load_real_rewards(cfg: TrainConfig, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(image-text reward, video-text reward) the variant needs, from the paper's checkpoints.

    Every missing file of both models is reported in one error before anything is loaded.
    """
    from bench.weights import MissingWeightsError, resolve_weights, reward_requirements
    from t2v_turbo_core import reward_models as R

    wanted: list[str] = []
    if cfg.uses_image_reward:
        if cfg.rm_img not in IMAGE_REWARDS:
            raise ValueError(f"rm_img={cfg.rm_img!r}: real teachers take one of {', '.join(IMAGE_REWARDS)}")
        wanted.append(cfg.rm_img)
    if cfg.uses_video_reward:
        wanted.append(VIDEO_REWARDS[cfg.rm_vid])
    required: dict[str, Any] = {}
    for reward in wanted:
        required.update(reward_requirements(reward))
    paths = resolve_weights(required, explicit=_explicit(cfg, required)) if required else {}

    from t2v_turbo_core.arch.internvideo2 import InternVideo2Config
    from t2v_turbo_core.arch.viclip import ViCLIPConfig

    arch = architectures(cfg)
    image = video = None
    if cfg.uses_image_reward:
        with _loading(f"the {cfg.rm_img} image reward", paths[cfg.rm_img]):
            if cfg.rm_img == "hpsv21":
                image = R.load_hpsv21(paths["hpsv21"], device=device, model_cfg=arch.get("hpsv21"))
            else:
                image = R.load_pickscore(paths["pickscore"], paths["pickscore_processor"], device=device)
    if cfg.uses_video_reward:
        if cfg.rm_vid == "viclip":
            viclip_cfg = _dataclass_from(ViCLIPConfig, arch["viclip"], "viclip") if "viclip" in arch else None
            with _loading("the ViCLIP video reward", paths["viclip"]):
                video = R.load_viclip(paths["viclip"], device=device, config=viclip_cfg)
        else:
            # InternVideo2 Stage-2 was trained with 4 frames; T2V-Turbo v1 feeds it 8.
            n = cfg.video_reward_frames or 4
            iv2_cfg = _dataclass_from(InternVideo2Config, arch["internvideo2"], "internvideo2") if "internvideo2" in arch else None
            with _loading("the InternVideo2 video reward", paths["internvideo2"]):
                video = R.load_internvideo2(paths["internvideo2"], paths["internvideo2_tokenizer"], device=device, num_frames=n,
                                            config=iv2_cfg)
    _ = MissingWeightsError  # re-exported for callers that catch it from here
    return image, video
