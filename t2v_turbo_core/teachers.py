"""The real teachers: ModelScopeT2V (diffusers format) and VideoCrafter2 (LVDM `model.ckpt`).

Pure loaders that take explicit local paths and never download. Each returns a
`TextToVideoModel` bundle (UNet, per-frame VAE, text encoder, noise schedule, geometry) whose
`make_student(lora_settings)` builds the T2V-Turbo student: teacher weights + a w projection
(zero-initialised, so it starts as the teacher; or the released code's random frozen one) +
LoRA on every Linear/Conv layer. A LoRA student shares the teacher's tensors (one UNet in
memory); `native_sampler` describes the teacher's own sampler for the native baseline.

Every missing file is reported at once, naming the file and where it was looked for; every
checkpoint must fit the architecture exactly (no missing, unexpected or mis-shaped weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from t2v_turbo_core.arch.ldm_autoencoder import (
    SD_VAE_DDCONFIG,
    SD_VAE_EMBED_DIM,
    SD_VAE_SCALING_FACTOR,
    diffusers_vae_config,
    ldm_vae_to_diffusers,
)
from t2v_turbo_core.arch.openclip_text import OpenCLIPTextEncoder, openclip_model_config
from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig
from t2v_turbo_core.lora import W_PROJECTION_SUFFIX, LoraSettings
from t2v_turbo_core.models import TextToVideoModel, TransformersTextEncoder, VideoVAE
from t2v_turbo_core.schedule import NoiseSchedule
from t2v_turbo_core.student import finish_student, share_teacher_weights, student_from_diffusers_unet

# --- ModelScopeT2V (damo-vilab / ali-vilab `text-to-video-ms-1.7b`, diffusers layout) ---------
# 256x256 (unet/config.json sample_size 32 latents x 8; T2V-Turbo's MS pipeline default), 16
# frames and CFG 9.0 (diffusers' TextToVideoSDPipeline defaults), 8 fps (the rate this project writes ModelScope videos at; the UNet has
# no fps input, this is only the rate videos are written at), LoRA rank 32 (t2v-turbo app_ms.py).
MODELSCOPE_HEIGHT = 256
MODELSCOPE_WIDTH = 256
MODELSCOPE_NUM_FRAMES = 16
MODELSCOPE_FPS = 8
MODELSCOPE_CFG = 9.0
MODELSCOPE_LORA = LoraSettings(rank=32)
MODELSCOPE_TEXT_TOKENS = 77
# ModelScope's own sampler: diffusers' TextToVideoSDPipeline defaults (50 steps, CFG 9, eta 0)
# with the DDIMScheduler its folder's scheduler/scheduler_config.json configures.
MODELSCOPE_NATIVE_STEPS = 50
MODELSCOPE_NATIVE_ETA = 0.0

# --- VideoCrafter2 (`model.ckpt` + configs/inference_t2v_512_v2.0.yaml) -----------------------
# 512x320 (W x H; yaml image_size [40, 64] latents x 8), 16 frames, fps 16 and LoRA rank 64
# (train_t2v_turbo_v1_lora.py's --n_frames / --fps / --lora_rank), teacher CFG 7.5 for the matched
# baseline (this project's choice; VideoCrafter2's own script uses 12, see VC2_NATIVE_CFG).
VC2_HEIGHT = 320
VC2_WIDTH = 512
VC2_NUM_FRAMES = 16
VC2_FPS = 16
VC2_CFG = 7.5
VC2_LORA = LoraSettings(rank=64)
# VideoCrafter2's own sampler (VideoCrafter scripts/run_text2video.sh): 50 DDIM steps on LVDM's
# uniform grid, eta 1.0, CFG 12, the UNet conditioned on fps 28.
VC2_NATIVE_STEPS = 50
VC2_NATIVE_CFG = 12.0
VC2_NATIVE_ETA = 1.0
VC2_NATIVE_FPS = 28
VC2_LINEAR_START = 0.00085  # yaml model.params.linear_start
VC2_LINEAR_END = 0.012  # yaml model.params.linear_end
VC2_NUM_TIMESTEPS = 1000  # yaml model.params.timesteps

GUIDANCE_EMBEDDING_DIM = 256  # T2V-Turbo's --unet_time_cond_proj_dim

# LatentDiffusion's schedule buffers (lvdm/models/ddpm3d.py register_schedule; `scale_arr`
# from use_scale): saved in model.ckpt, not weights of any network.
LDM_SCHEDULE_BUFFERS = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "scale_arr",
        "scale_factor",
        "logvar",
    }
)
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model."


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the architecture (missing / unexpected / mis-shaped)."""


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _missing_files_error(what: str, missing: Iterable[tuple[str, Iterable[Path]]]) -> FileNotFoundError:
    lines = [f"{what}: required files are missing (nothing is ever downloaded):"]
    for name, looked in missing:
        looked = list(looked)
        where = looked[0] if len(looked) == 1 else " or ".join(str(p) for p in looked)
        lines.append(f"  - {name}: looked for {where}")
    return FileNotFoundError("\n".join(lines))


def check_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, allow_missing: Callable[[str], bool] = lambda k: False
) -> None:
    """Raise `CheckpointMismatchError` unless `state_dict` fits `module` exactly.

    `allow_missing(key)`: keys of the module the checkpoint may lack (the student's w projection).
    """
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict and not allow_missing(k))
    unexpected = sorted(k for k in state_dict if k not in expected)
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state_dict
        if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{what}: the checkpoint does not fit the architecture"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"  {label} ({len(items)}): {', '.join(items[:8])}{more}")
        raise CheckpointMismatchError("\n".join(parts))


def _assign_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Strictly load into a module built on the meta device (assign: no second copy in memory)."""
    check_state_dict(module, state_dict, what)
    module.load_state_dict(dict(state_dict), strict=True, assign=True)
    leftovers = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"{what}: tensors left uninitialised after loading: {leftovers[:5]}")
    return module


def load_torch_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load` with `weights_only=True`, memory-mapped when the file format allows it."""
    from t2v_turbo_core.safe_io import load_torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # Legacy (non-zip) torch files cannot be memory-mapped; a cut file fails here with its name.
        return load_torch(path, map_location="cpu")


# ----------------------------------------------------------------------------------------------
# ModelScopeT2V
# ----------------------------------------------------------------------------------------------

# diffusers' weight file stem (transformers': model.safetensors / pytorch_model.bin).
_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"


def _weight_candidates(folder: Path, kind: str, variant: str | None) -> list[tuple[Path, str | None, bool]]:
    """(file, variant, is_safetensors) candidates for one component, in order of preference."""
    variants = [variant, None] if variant else [None, "fp16"]
    out = []
    for v in variants:
        suffix = f".{v}" if v else ""
        if kind == "diffusers":
            out.append((folder / f"{_DIFFUSERS_WEIGHTS}{suffix}.safetensors", v, True))
            out.append((folder / f"{_DIFFUSERS_WEIGHTS}{suffix}.safetensors.index.json", v, True))
        else:
            out.append((folder / f"model{suffix}.safetensors", v, True))
            out.append((folder / f"model{suffix}.safetensors.index.json", v, True))
    for v in variants:
        suffix = f".{v}" if v else ""
        name = _DIFFUSERS_WEIGHTS if kind == "diffusers" else "pytorch_model"
        out.append((folder / f"{name}{suffix}.bin", v, False))
        out.append((folder / f"{name}{suffix}.bin.index.json", v, False))
    return out


@dataclass
class ModelScopeFiles:
    """Where each ModelScope component's files are (resolved by `modelscope_files`)."""

    root: Path
    weights: dict[str, tuple[Path, str | None, bool]] = field(default_factory=dict)


# Files other than weights, each with its alternatives (any one will do). The tokenizer is
# either the slow files of the official repo (vocab.json + merges.txt) or a tokenizer.json,
# written as two any-of groups: (vocab or tokenizer.json) and (merges or tokenizer.json).
MODELSCOPE_OTHER_FILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unet config", ("unet/config.json",)),
    ("vae config", ("vae/config.json",)),
    ("text_encoder config", ("text_encoder/config.json",)),
    ("tokenizer vocabulary", ("tokenizer/vocab.json", "tokenizer/tokenizer.json")),
    ("tokenizer merges", ("tokenizer/merges.txt", "tokenizer/tokenizer.json")),
    ("scheduler config", ("scheduler/scheduler_config.json",)),
)
_MODELSCOPE_WEIGHT_KINDS = {"unet": "diffusers", "vae": "diffusers", "text_encoder": "transformers"}


def modelscope_files(root: str | Path, variant: str | None = None) -> ModelScopeFiles:
    """Check the diffusers layout of `text-to-video-ms-1.7b` under `root`; one error lists every gap.

    Weights may be `.safetensors` or `.bin`, full precision or the `fp16` variant (preferred
    order: `variant` if given, else full precision first; safetensors before .bin).
    `root` may also be the folder's `model_index.json`.
    """
    root = Path(root)
    if root.name == "model_index.json":
        root = root.parent
    files = ModelScopeFiles(root=root)
    missing: list[tuple[str, list[Path]]] = []
    for what, alternatives in MODELSCOPE_OTHER_FILES:
        if not any((root / rel).is_file() for rel in alternatives):
            missing.append((what, [root / rel for rel in alternatives]))
    for component, kind in _MODELSCOPE_WEIGHT_KINDS.items():
        candidates = _weight_candidates(root / component, kind, variant)
        found = next((c for c in candidates if c[0].is_file()), None)
        if found is None:
            missing.append((f"{component} weights", [c[0] for c in candidates if not c[0].name.endswith(".index.json")]))
        else:
            files.weights[component] = found
    if missing:
        raise _missing_files_error(f"ModelScopeT2V (diffusers layout) under {root}", missing)
    return files


def _check_loading_info(info: Mapping[str, Any], what: str) -> None:
    bad = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    errors = [str(e) for e in info.get("error_msgs") or []]
    if any(bad.values()) or errors:
        details = "; ".join(f"{k} ({len(v)}): {[str(x) for x in v[:5]]}" for k, v in bad.items() if v)
        raise CheckpointMismatchError(f"{what}: the checkpoint does not fit the architecture: {details} {' '.join(errors)}".strip())


def schedule_from_scheduler_config(config: Mapping[str, Any]) -> NoiseSchedule:
    """The teacher's training schedule from a diffusers scheduler config (scaled linear, eps)."""
    schedule = config.get("beta_schedule", "linear")
    prediction = config.get("prediction_type", "epsilon")
    if schedule != "scaled_linear" or prediction != "epsilon" or config.get("trained_betas"):
        raise ValueError(
            f"unsupported teacher schedule: beta_schedule={schedule!r}, prediction_type={prediction!r} "
            "(the method needs eps-prediction with scaled-linear betas)"
        )
    return NoiseSchedule.scaled_linear(
        int(config.get("num_train_timesteps", 1000)), float(config["beta_start"]), float(config["beta_end"])
    )


def load_modelscope(
    path_or_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    variant: str | None = None,
) -> TextToVideoModel:
    """ModelScopeT2V from a local diffusers folder (`unet/ vae/ text_encoder/ tokenizer/ scheduler/`).

    Text conditioning: CLIPTextModel's last hidden state over 77 tokens (as diffusers'
    TextToVideoSDPipeline). VAE scaling from `vae/config.json` (0.18215 in the official files).
    """
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    files = modelscope_files(path_or_dir, variant)
    root = files.root

    def load_component(cls: Any, component: str, dtype_key: str) -> Any:
        # diffusers names the dtype argument `torch_dtype`, current transformers `dtype`.
        path, var, safe = files.weights[component]
        model, info = cls.from_pretrained(
            root / component,
            local_files_only=True,
            variant=var,
            use_safetensors=safe,
            output_loading_info=True,
            **{dtype_key: dtype},
        )
        _check_loading_info(info, f"{root / component} ({path.name})")
        return model

    unet = load_component(UNet3DConditionModel, "unet", "torch_dtype")
    vae = load_component(AutoencoderKL, "vae", "torch_dtype")
    text_model = load_component(CLIPTextModel, "text_encoder", "dtype")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    scheduler_config = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    schedule = schedule_from_scheduler_config(scheduler_config)

    for module in (unet, vae, text_model):
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)

    def make_student(lora_settings: LoraSettings | None = MODELSCOPE_LORA) -> nn.Module:
        return student_from_diffusers_unet(unet, lora_settings, GUIDANCE_EMBEDDING_DIM)

    # The frame size diffusers' TextToVideoSDPipeline samples at: unet sample_size x the VAE's
    # downsampling (32 x 8 = 256 for the official folder); 256 when the config has none.
    vae_downsample = 2 ** (len(vae.config.block_out_channels) - 1)
    sample = unet.config.sample_size
    if sample is None:
        height, width = MODELSCOPE_HEIGHT, MODELSCOPE_WIDTH
    else:
        h, w = (sample, sample) if isinstance(sample, int) else sample
        height, width = int(h) * vae_downsample, int(w) * vae_downsample

    return TextToVideoModel(
        name="ms",
        unet=unet,
        vae=VideoVAE(vae),
        text_encoder=TransformersTextEncoder(tokenizer, text_model, max_length=MODELSCOPE_TEXT_TOKENS),
        schedule=schedule,
        num_frames=MODELSCOPE_NUM_FRAMES,
        height=height,
        width=width,
        fps=MODELSCOPE_FPS,
        make_student=make_student,
        cfg_scale=MODELSCOPE_CFG,
        unet_kwargs={},
        latent_channels=int(unet.config.in_channels),
        vae_downsample=vae_downsample,
        native_sampler={
            "sampler": "diffusers-ddim", "steps": MODELSCOPE_NATIVE_STEPS, "guidance_scale": MODELSCOPE_CFG,
            "eta": MODELSCOPE_NATIVE_ETA, "scheduler_config": scheduler_config,
        },
    )


# ----------------------------------------------------------------------------------------------
# VideoCrafter2
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoCrafter2Config:
    """Everything `model.ckpt` does not say about itself (defaults: inference_t2v_512_v2.0.yaml)."""

    unet: VideoCrafter2UNetConfig = VideoCrafter2UNetConfig()
    vae_ddconfig: Mapping[str, Any] = field(default_factory=lambda: dict(SD_VAE_DDCONFIG))
    vae_embed_dim: int = SD_VAE_EMBED_DIM
    scale_factor: float = SD_VAE_SCALING_FACTOR
    linear_start: float = VC2_LINEAR_START
    linear_end: float = VC2_LINEAR_END
    num_timesteps: int = VC2_NUM_TIMESTEPS
    # open_clip architecture of the text encoder (FrozenOpenCLIPEmbedder's default arch) and
    # the layer it is read at; `text_model_cfg` overrides the named config (tests: tiny towers).
    text_arch: str = "ViT-H-14"
    text_layer: str = "penultimate"
    text_model_cfg: Mapping[str, Any] | None = None
    latent_hw: tuple[int, int] = (VC2_HEIGHT // 8, VC2_WIDTH // 8)  # yaml image_size [h, w]
    # LatentDiffusion's x0 rescaling at sampling (yaml use_scale / scale_b; LVDM defaults for
    # scale_a, mid_step and fix_scale_bug): used only by the native sampler, never in training.
    use_scale: bool = True
    scale_a: float = 1.0
    scale_b: float = 0.7
    mid_step: int = 400
    fix_scale_bug: bool = False

    @classmethod
    def from_yaml(cls, path: str | Path) -> "VideoCrafter2Config":
        """Read an LVDM inference yaml (the `configs/inference_t2v_512_v2.0.yaml` layout)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise _missing_files_error("VideoCrafter2 config", [("LVDM yaml", [path])])
        params = yaml.safe_load(path.read_text())["model"]["params"]
        first = params["first_stage_config"]["params"]
        cond = params.get("cond_stage_config", {}).get("params", {}) or {}
        image_size = params.get("image_size", [VC2_HEIGHT // 8, VC2_WIDTH // 8])
        if isinstance(image_size, int):
            image_size = [image_size, image_size]
        if params.get("parameterization", "eps") != "eps" or params.get("beta_schedule", "linear") != "linear":
            raise ValueError(f"{path}: only eps-prediction with LVDM's 'linear' (= scaled linear) betas is supported")
        return cls(
            unet=VideoCrafter2UNetConfig.from_lvdm_params(params["unet_config"]["params"]),
            vae_ddconfig=dict(first["ddconfig"]),
            vae_embed_dim=int(first["embed_dim"]),
            scale_factor=float(params.get("scale_factor", 1.0)),
            linear_start=float(params.get("linear_start", 1e-4)),
            linear_end=float(params.get("linear_end", 2e-2)),
            num_timesteps=int(params.get("timesteps", 1000)),
            text_arch=str(cond.get("arch", "ViT-H-14")),
            text_layer=str(cond.get("layer", "last")),
            latent_hw=(int(image_size[0]), int(image_size[1])),
            use_scale=bool(params.get("use_scale", False)),
            scale_a=float(params.get("scale_a", 1.0)),
            scale_b=float(params.get("scale_b", 0.3)),
            mid_step=int(params.get("mid_step", 400)),
            fix_scale_bug=bool(params.get("fix_scale_bug", False)),
        )


def split_ldm_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Split a LatentDiffusion state dict into unet / vae / text / schedule (prefixes stripped).

    Raises `CheckpointMismatchError` for keys that belong to none of them.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "vae": {}, "text": {}, "schedule": {}}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(UNET_PREFIX):
            parts["unet"][key[len(UNET_PREFIX) :]] = value
        elif key.startswith(VAE_PREFIX):
            parts["vae"][key[len(VAE_PREFIX) :]] = value
        elif key.startswith(TEXT_PREFIX):
            parts["text"][key[len(TEXT_PREFIX) :]] = value
        elif key in LDM_SCHEDULE_BUFFERS:
            parts["schedule"][key] = value
        else:
            unknown.append(key)
    if unknown:
        more = f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else ""
        raise CheckpointMismatchError(
            f"unexpected keys outside {UNET_PREFIX}*, {VAE_PREFIX}*, {TEXT_PREFIX}* and the schedule buffers "
            f"({len(unknown)}): {', '.join(sorted(unknown)[:8])}{more}"
        )
    return parts


def build_videocrafter2_unet(config: VideoCrafter2UNetConfig, state_dict: Mapping[str, torch.Tensor]) -> VideoCrafter2UNet:
    with torch.device("meta"):
        unet = VideoCrafter2UNet(config)
    return _assign_weights(unet, state_dict, "VideoCrafter2 UNet (model.diffusion_model.*)")


def build_ldm_vae(
    state_dict: Mapping[str, torch.Tensor], ddconfig: Mapping[str, Any], embed_dim: int, scaling_factor: float
) -> Any:
    """diffusers `AutoencoderKL` from LDM `first_stage_model.*` weights (renamed, then strict)."""
    from diffusers import AutoencoderKL

    converted, unknown = ldm_vae_to_diffusers(state_dict, len(ddconfig["ch_mult"]))
    if unknown:
        raise CheckpointMismatchError(f"VAE (first_stage_model.*): keys with no diffusers counterpart: {sorted(unknown)[:8]}")
    with torch.device("meta"):
        vae = AutoencoderKL(**diffusers_vae_config(ddconfig, embed_dim, scaling_factor))
    return _assign_weights(vae, converted, "VAE (first_stage_model.*, renamed to diffusers)")


def build_openclip_text_encoder(
    state_dict: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any], layer: str
) -> OpenCLIPTextEncoder:
    with torch.device("meta"):
        encoder = OpenCLIPTextEncoder(model_cfg, layer=layer)
    return _assign_weights(encoder, state_dict, "text encoder (cond_stage_model.*)")


def check_ldm_schedule(buffers: Mapping[str, torch.Tensor], schedule: NoiseSchedule, where: str) -> None:
    """The checkpoint's own `alphas_cumprod` must be the configured scaled-linear schedule."""
    if "alphas_cumprod" not in buffers:
        return
    saved = buffers["alphas_cumprod"].float().cpu()
    if saved.shape != schedule.alphas_cumprod.shape or not torch.allclose(saved, schedule.alphas_cumprod, rtol=1e-4, atol=1e-6):
        raise ValueError(f"{where}: the checkpoint's alphas_cumprod is not the configured scaled-linear schedule")


def videocrafter2_student(
    teacher: VideoCrafter2UNet,
    lora: LoraSettings | None = VC2_LORA,
    guidance_embedding_dim: int = GUIDANCE_EMBEDDING_DIM,
) -> VideoCrafter2UNet:
    """The T2V-Turbo student of a VideoCrafter2 UNet: the teacher + w projection + LoRA.

    The w projection (`cond_proj`, 256 -> model_channels, no bias) starts at zero so that the
    student computes exactly the teacher's function (or, `lora.w_proj_init="released"`, as
    T2V-Turbo's released code: random, frozen, with a LoRA). With LoRA the student shares the
    teacher's frozen tensors (one UNet in memory); with `lora=None` it is a copy and every
    weight trains.
    """
    ref = next(teacher.parameters())
    with torch.device("meta"):
        student = VideoCrafter2UNet(teacher.config.replace(time_cond_proj_dim=guidance_embedding_dim))
    teacher_state = teacher.state_dict()
    check_state_dict(
        student, teacher_state, "VideoCrafter2 student", allow_missing=lambda k: W_PROJECTION_SUFFIX in k.split(".")
    )
    if lora is not None:
        share_teacher_weights(student, teacher, "VideoCrafter2 student")
    else:
        student = student.to_empty(device=ref.device).to(ref.dtype)
        student.load_state_dict(teacher_state, strict=False)
    return finish_student(student, lora)


def load_videocrafter2(
    ckpt_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config: VideoCrafter2Config = VideoCrafter2Config(),
) -> TextToVideoModel:
    """VideoCrafter2 from its official `model.ckpt` (`{'state_dict': {...}}` or a bare state dict).

    UNet: `model.diffusion_model.*` into `VideoCrafter2UNet`; VAE: `first_stage_model.*` renamed
    into diffusers' `AutoencoderKL`; text: `cond_stage_model.*` into the OpenCLIP-H text tower read
    at its penultimate block. All three load strictly; the remaining keys must be LatentDiffusion's
    schedule buffers, and the saved `alphas_cumprod` must match the configured betas.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise _missing_files_error("VideoCrafter2", [("model.ckpt", [ckpt_path])])
    raw = load_torch_checkpoint(ckpt_path)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    parts = split_ldm_checkpoint(state)
    for name, prefix in (("unet", UNET_PREFIX), ("vae", VAE_PREFIX), ("text", TEXT_PREFIX)):
        if not parts[name]:
            raise CheckpointMismatchError(f"{ckpt_path}: no {prefix}* weights (is this VideoCrafter2's model.ckpt?)")

    schedule = NoiseSchedule.scaled_linear(config.num_timesteps, config.linear_start, config.linear_end)
    check_ldm_schedule(parts["schedule"], schedule, str(ckpt_path))

    unet = build_videocrafter2_unet(config.unet, parts["unet"])
    vae = build_ldm_vae(parts["vae"], config.vae_ddconfig, config.vae_embed_dim, config.scale_factor)
    text_cfg = config.text_model_cfg if config.text_model_cfg is not None else openclip_model_config(config.text_arch)
    text = build_openclip_text_encoder(parts["text"], text_cfg, config.text_layer)
    del raw, state, parts

    for module in (unet, vae, text):
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)

    def make_student(lora_settings: LoraSettings | None = VC2_LORA) -> nn.Module:
        return videocrafter2_student(unet, lora_settings, GUIDANCE_EMBEDDING_DIM)

    h, w = config.latent_hw
    down = 2 ** (len(config.vae_ddconfig["ch_mult"]) - 1)
    return TextToVideoModel(
        name="vc2",
        unet=unet,
        vae=VideoVAE(vae, scaling_factor=config.scale_factor),
        text_encoder=text,
        schedule=schedule,
        num_frames=VC2_NUM_FRAMES,
        height=h * down,
        width=w * down,
        fps=VC2_FPS,
        make_student=make_student,
        cfg_scale=VC2_CFG,
        unet_kwargs={"fps": VC2_FPS},
        latent_channels=config.unet.in_channels,
        vae_downsample=down,
        native_sampler={
            "sampler": "lvdm-ddim", "steps": VC2_NATIVE_STEPS, "guidance_scale": VC2_NATIVE_CFG, "eta": VC2_NATIVE_ETA,
            "fps": VC2_NATIVE_FPS, "use_scale": config.use_scale, "scale_a": config.scale_a, "scale_b": config.scale_b,
            "mid_step": config.mid_step, "fix_scale_bug": config.fix_scale_bug,
        },
    )
