"""Model adapters: how the method talks to a video UNet, a frame-wise VAE and a text encoder.

The distillation and sampling code needs only three things of a text-to-video latent
diffusion model, so that diffusers' `UNet3DConditionModel` (ModelScopeT2V), VideoCrafter2's
LVDM UNet and the tiny world's teacher plug in alike:

* a denoiser called as `unet(z, t, encoder_hidden_states=c, timestep_cond=w_emb, **extra)`
  that returns the eps prediction (a tensor, a tuple, or an object with `.sample`);
* a `VideoVAE` (per-frame 2D autoencoder: latents are `[B, C, F, h, w]`, scaled);
* a `TextEncoder`: prompts -> `[B, L, D]` embeddings.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import torch


def predict_noise(
    unet: Any,
    z: torch.Tensor,
    t: torch.Tensor,
    text_emb: torch.Tensor,
    w_emb: torch.Tensor | None = None,
    **unet_kwargs: Any,
) -> torch.Tensor:
    """Call a video denoiser with the diffusers convention and return its eps prediction."""
    if t.ndim == 0:
        t = t.expand(z.shape[0])
    out = unet(z, t, encoder_hidden_states=text_emb, timestep_cond=w_emb, **unet_kwargs)
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


# Per diffusers class: a subclass whose `dtype` is the value computed on entering `cached_dtype`.
_CACHED_DTYPE_CLASSES: dict[type, type] = {}


def _cached_dtype_class(cls: type) -> type:
    sub = _CACHED_DTYPE_CLASSES.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls,), {
            "__module__": cls.__module__,
            "__doc__": cls.__doc__,
            "dtype": property(lambda self: self.__dict__["_cached_dtype"]),
            "_dtype_is_cached": True,
        })
        _CACHED_DTYPE_CLASSES[cls] = sub
    return sub


@contextlib.contextmanager
def cached_dtype(*modules: Any) -> Iterator[None]:
    """Within the block, a diffusers model's `dtype` is computed once instead of at every call.

    diffusers' UNet3DConditionModel reads `self.dtype` in every forward, and ModelMixin
    computes it by walking every submodule (looking for casting hooks): 3 ms per call for the
    tiny teacher, 15 ms for its LoRA student (3,533 modules), i.e. 10% of a one-video
    sampling call and 4% of a training step. The value is the one diffusers computes, taken
    on entry; nothing here changes a parameter's dtype. Other objects (wrappers, plain
    modules) pass through; a DDP wrapper's inner module is the one swapped.
    """
    swapped = []
    try:
        for module in modules:
            if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
                module = module.module
            cls = type(module)
            if not isinstance(module, torch.nn.Module) or getattr(cls, "_dtype_is_cached", False) \
                    or not isinstance(getattr(cls, "dtype", None), property) or any(m is module for m, _ in swapped):
                continue
            module.__dict__["_cached_dtype"] = module.dtype
            module.__class__ = _cached_dtype_class(cls)
            swapped.append((module, cls))
        yield
    finally:
        for module, cls in reversed(swapped):
            module.__class__ = cls
            module.__dict__.pop("_cached_dtype", None)


# ATen's CPU convolution picks its kernel by shape: a 3-D convolution whose kernel is 1 x 1 in
# space (the (3, 1, 1) temporal convs of ModelScope's and VideoCrafter2's UNets) goes to the
# im2col kernel (`slow_conv3d`) below 16 items per batch on one thread, and at batch 1 (small
# inputs) on any number of threads.
# There the same product as a 2-D convolution over (frames, pixels) runs on oneDNN, 1.6-4x
# faster (tiny world, one thread: 64 channels, batch 8, forward + backward 7.3 vs 1.8 ms); from
# 16 items up oneDNN takes the 3-D one and is as fast or faster (batch 64: 13.8 vs 19.9 ms).
TEMPORAL_CONV_2D_BELOW_BATCH = 16


class TemporalConv3d(torch.nn.Conv3d):
    """A `Conv3d` over frames only (kernel, stride, dilation 1 in space; zero padding in time
    only) that runs on the CPU, below `TEMPORAL_CONV_2D_BELOW_BATCH` items, as the equal 2-D
    convolution of [B, C, F, H*W]: the same sums in another order, so the same output up to
    float rounding. Its parameters, state-dict keys and every other path are Conv3d's."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if input.dim() != 5 or input.device.type != "cpu" or input.shape[0] >= TEMPORAL_CONV_2D_BELOW_BATCH:
            return super()._conv_forward(input, weight, bias)
        n, c, f, h, w = input.shape
        out = torch.nn.functional.conv2d(
            input.reshape(n, c, f, h * w), weight.flatten(3), bias,
            (self.stride[0], 1), (self.padding[0], 0), (self.dilation[0], 1), self.groups,
        )
        return out.view(n, out.shape[1], out.shape[2], h, w)


def _is_temporal_conv(module: torch.nn.Module) -> bool:
    return (
        type(module) is torch.nn.Conv3d
        and tuple(module.kernel_size[1:]) == (1, 1)
        and tuple(module.stride[1:]) == (1, 1)
        and tuple(module.dilation[1:]) == (1, 1)
        and isinstance(module.padding, tuple)
        and tuple(module.padding[1:]) == (0, 0)
        and module.padding_mode == "zeros"
    )


def use_temporal_conv2d(model: torch.nn.Module) -> int:
    """Make every plain temporal `Conv3d` of `model` a `TemporalConv3d` (in place; the weights
    stay where they are). Returns how many it changed; any other layer is left alone."""
    changed = 0
    for module in model.modules():
        if _is_temporal_conv(module):
            module.__class__ = TemporalConv3d
            changed += 1
    return changed


@runtime_checkable
class TextEncoder(Protocol):
    """Prompts -> conditioning embeddings [B, L, D] (frozen; no gradients needed)."""

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor: ...


class TransformersTextEncoder:
    """A transformers text model + tokenizer returning its last hidden states.

    This is ModelScopeT2V's conditioning (CLIPTextModel, 77 tokens) and the tiny world's.
    Models conditioned on another layer (VideoCrafter2: OpenCLIP's penultimate layer) bring
    their own encoder that satisfies `TextEncoder`.
    """

    def __init__(self, tokenizer: Any, text_model: torch.nn.Module, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.text_model = text_model
        self.max_length = max_length or tokenizer.model_max_length

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        device = next(self.text_model.parameters()).device
        tokens = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        return self.text_model(tokens.input_ids.to(device)).last_hidden_state


class VideoVAE:
    """A per-frame image autoencoder (diffusers `AutoencoderKL` or compatible) used on videos.

    `encode`: pixels [B, 3, F, H, W] in [-1, 1] -> latents [B, C, F, h, w] x scaling_factor.
    `decode`: the inverse. `decode_frames` decodes only the frames a reward model needs, with
    gradients, returning [B, K, 3, H, W] in [0, 1] (the reward models' convention).
    """

    def __init__(self, vae: Any, scaling_factor: float | None = None, chunk_frames: int = 64):
        self.vae = vae
        if scaling_factor is None:
            scaling_factor = float(vae.config.scaling_factor)
        self.scaling_factor = float(scaling_factor)
        self.chunk_frames = chunk_frames

    def _encode_images(self, images: torch.Tensor, sample: bool, generator: torch.Generator | None) -> torch.Tensor:
        out = self.vae.encode(images)
        dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
        if not sample:
            return dist.mode()
        # Sample on the CPU generator when one is given so results do not depend on the device.
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype, device="cpu")
        return dist.mean + dist.std * noise.to(dist.mean.device)

    def encode(
        self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        b, c, f, h, w = video.shape
        images = video.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        latents = torch.cat(
            [self._encode_images(chunk, sample, generator) for chunk in images.split(self.chunk_frames)]
        )
        latents = latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)
        return latents * self.scaling_factor

    def _decode_images(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latents / self.scaling_factor)
        return out.sample if hasattr(out, "sample") else out[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, F, h, w] -> pixels [B, 3, F, H, W] in [-1, 1] (not clamped)."""
        b, c, f, h, w = latents.shape
        images = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        pixels = torch.cat([self._decode_images(chunk) for chunk in images.split(self.chunk_frames)])
        return pixels.reshape(b, f, *pixels.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_frames(self, latents: torch.Tensor, frame_idx: torch.Tensor) -> torch.Tensor:
        """Decode frames `frame_idx` [B, K] of each video -> [B, K, 3, H, W] in [0, 1].

        Differentiable with respect to `latents`; only the selected frames are decoded, which
        is what keeps the reward step cheap (the VAE is per-frame).
        """
        b, c, f, h, w = latents.shape
        k = frame_idx.shape[1]
        idx = frame_idx.to(latents.device).long()
        gathered = torch.gather(
            latents.permute(0, 2, 1, 3, 4), 1, idx[:, :, None, None, None].expand(b, k, c, h, w)
        )
        images = gathered.reshape(b * k, c, h, w)
        pixels = torch.cat([self._decode_images(chunk) for chunk in images.split(self.chunk_frames)])
        pixels = (pixels.float() / 2 + 0.5).clamp(0, 1)
        return pixels.reshape(b, k, *pixels.shape[1:])


def enable_gradient_checkpointing(module: Any) -> bool:
    """Turn on gradient checkpointing where the model supports it; report whether it did.

    diffusers' AutoencoderKL supports it; its UNet3DConditionModel does not (it declares
    `_supports_gradient_checkpointing = False`), so for ModelScope-style students the memory
    saving comes from LoRA and from never backpropagating through a sampling chain.
    """
    if getattr(module, "_supports_gradient_checkpointing", False) and hasattr(module, "enable_gradient_checkpointing"):
        module.enable_gradient_checkpointing()
        return True
    return False


class TextToVideoModel:
    """Everything the method needs of a teacher: UNet, VAE, text encoder, schedule, geometry.

    `make_student(lora_settings)` builds the student (teacher weights + w projection + LoRA);
    `unet_kwargs` are extra denoiser inputs (VideoCrafter2: `fps`). `cfg_scale` is the
    teacher's classifier-free guidance for the matched 50-step DDIM baseline; `native_sampler`
    describes the teacher's own sampler, where it has one.
    """

    def __init__(
        self,
        name: str,
        unet: torch.nn.Module,
        vae: VideoVAE,
        text_encoder: TextEncoder,
        schedule: Any,
        num_frames: int,
        height: int,
        width: int,
        fps: int,
        make_student: Any,
        cfg_scale: float = 7.5,
        unet_kwargs: dict[str, Any] | None = None,
        latent_channels: int = 4,
        vae_downsample: int = 8,
        native_sampler: dict[str, Any] | None = None,
    ):
        self.name = name
        use_temporal_conv2d(unet)
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.schedule = schedule
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.fps = fps
        self.make_student = make_student
        self.cfg_scale = cfg_scale
        self.unet_kwargs = dict(unet_kwargs or {})
        self.latent_channels = latent_channels
        self.vae_downsample = vae_downsample
        # The teacher's own sampler as its authors' script runs it (steps, CFG, eta, ...):
        # what `bench generate --teacher-protocol native` reproduces; None when it has none.
        self.native_sampler = dict(native_sampler) if native_sampler else None

    def latent_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        return (batch, self.latent_channels, self.num_frames, self.height // self.vae_downsample, self.width // self.vae_downsample)
