"""An LDM `AutoencoderKL` checkpoint (`first_stage_model.*`) as diffusers' `AutoencoderKL`.

VideoCrafter2 keeps the Stable Diffusion VAE in LDM's layout (`lvdm/models/autoencoder.py`,
`lvdm/modules/networks/ae_modules.py`). diffusers implements the same network with other
module names; this module renames the weights. The correspondence (a fact of the two code
bases, also used by diffusers' own single-file conversion):

| LDM | diffusers |
| --- | --- |
| `encoder.down.{i}.block.{j}` | `encoder.down_blocks.{i}.resnets.{j}` |
| `encoder.down.{i}.downsample.conv` | `encoder.down_blocks.{i}.downsamplers.0.conv` |
| `decoder.up.{i}.block.{j}` | `decoder.up_blocks.{n-1-i}.resnets.{j}` (LDM indexes by resolution) |
| `decoder.up.{i}.upsample.conv` | `decoder.up_blocks.{n-1-i}.upsamplers.0.conv` |
| `*.mid.block_1` / `block_2` | `*.mid_block.resnets.0` / `1` |
| `*.mid.attn_1.{norm,q,k,v,proj_out}` | `*.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}` (1x1 conv -> linear) |
| `nin_shortcut` | `conv_shortcut` |
| `*.norm_out` | `*.conv_norm_out` |

Numerics agree: both pad the stride-2 downsampling conv by (0, 1, 0, 1), use GroupNorm(32,
eps 1e-6) and single-head mid attention scaled by 1/sqrt(C).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

# Stable Diffusion's VAE as VideoCrafter2 configures it: `first_stage_config.params` of
# `configs/inference_t2v_512_v2.0.yaml` (embed_dim 4, ddconfig below).
SD_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 512,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
SD_VAE_EMBED_DIM = 4
# `scale_factor: 0.18215` in the same yaml (scale_by_std: false).
SD_VAE_SCALING_FACTOR = 0.18215


def diffusers_vae_config(
    ddconfig: Mapping[str, Any] = SD_VAE_DDCONFIG,
    embed_dim: int = SD_VAE_EMBED_DIM,
    scaling_factor: float = SD_VAE_SCALING_FACTOR,
    norm_num_groups: int = 32,
) -> dict[str, Any]:
    """diffusers `AutoencoderKL` kwargs for an LDM `ddconfig` (refusing what diffusers lacks)."""
    errors = []
    if list(ddconfig.get("attn_resolutions", [])):
        errors.append("attn_resolutions must be empty (diffusers' AutoencoderKL only has mid-block attention)")
    if not ddconfig.get("double_z", True):
        errors.append("double_z must be true (a KL autoencoder predicts mean and log-variance)")
    if embed_dim != ddconfig["z_channels"]:
        errors.append(f"embed_dim={embed_dim} must equal z_channels={ddconfig['z_channels']}")
    if errors:
        raise ValueError("unsupported LDM autoencoder config: " + "; ".join(errors))
    n = len(ddconfig["ch_mult"])
    return {
        "in_channels": int(ddconfig["in_channels"]),
        "out_channels": int(ddconfig["out_ch"]),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": [int(ddconfig["ch"]) * int(m) for m in ddconfig["ch_mult"]],
        "layers_per_block": int(ddconfig["num_res_blocks"]),
        "latent_channels": int(ddconfig["z_channels"]),
        "norm_num_groups": norm_num_groups,
        "sample_size": int(ddconfig["resolution"]),
        "scaling_factor": float(scaling_factor),
    }


_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _rename(key: str, num_levels: int) -> str | None:
    """diffusers name of one LDM autoencoder key; None if the key is not an autoencoder weight."""
    if re.fullmatch(r"(quant_conv|post_quant_conv)\.(weight|bias)", key):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if not m:
        return None
    part, rest = m.groups()
    rest = rest.replace("nin_shortcut", "conv_shortcut")
    if m2 := re.fullmatch(r"(conv_in|conv_out)\.(weight|bias)", rest):
        return f"{part}.{rest}"
    if m2 := re.fullmatch(r"norm_out\.(weight|bias)", rest):
        return f"{part}.conv_norm_out.{m2.group(1)}"
    if m2 := re.fullmatch(r"mid\.block_([12])\.(.+)", rest):
        return f"{part}.mid_block.resnets.{int(m2.group(1)) - 1}.{m2.group(2)}"
    if m2 := re.fullmatch(r"mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)", rest):
        return f"{part}.mid_block.attentions.0.{_ATTN[m2.group(1)]}.{m2.group(2)}"
    if part == "encoder":
        if m2 := re.fullmatch(r"down\.(\d+)\.block\.(\d+)\.(.+)", rest):
            return f"encoder.down_blocks.{m2.group(1)}.resnets.{m2.group(2)}.{m2.group(3)}"
        if m2 := re.fullmatch(r"down\.(\d+)\.downsample\.conv\.(weight|bias)", rest):
            return f"encoder.down_blocks.{m2.group(1)}.downsamplers.0.conv.{m2.group(2)}"
    else:
        # LDM's decoder.up[i] is the block at resolution level i (0 = full size); diffusers
        # lists its up_blocks in execution order, lowest resolution first.
        if m2 := re.fullmatch(r"up\.(\d+)\.block\.(\d+)\.(.+)", rest):
            return f"decoder.up_blocks.{num_levels - 1 - int(m2.group(1))}.resnets.{m2.group(2)}.{m2.group(3)}"
        if m2 := re.fullmatch(r"up\.(\d+)\.upsample\.conv\.(weight|bias)", rest):
            return f"decoder.up_blocks.{num_levels - 1 - int(m2.group(1))}.upsamplers.0.conv.{m2.group(2)}"
    return None


def ldm_vae_to_diffusers(
    state_dict: Mapping[str, torch.Tensor], num_levels: int
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename LDM autoencoder weights (no prefix) to diffusers'; also return keys not understood.

    The mid-block attention's 1x1 convolutions become linear weights ([C, C, 1, 1] -> [C, C]).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        new = _rename(key, num_levels)
        if new is None:
            unknown.append(key)
            continue
        if ".mid_block.attentions.0.to_" in new and new.endswith(".weight") and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])
        out[new] = value
    return out, unknown
