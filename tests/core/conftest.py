"""Tiny models built inline from configs (diffusers style): CPU, seconds."""

import pytest
import torch
from diffusers import AutoencoderKL, UNet3DConditionModel

TEXT_DIM = 16


def make_tiny_unet3d(seed: int = 0, time_cond_proj_dim=None) -> UNet3DConditionModel:
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
        up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=4,
        time_cond_proj_dim=time_cond_proj_dim,
    ).eval()
    # diffusers zero-initialises some layers (the last temporal conv, conv_out) so that a fresh
    # UNet3D is the identity along time; a *trained* teacher has none of those zeros.
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.abs().sum() == 0 and "cond_proj" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return unet


def make_tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=8,
    ).eval()


@pytest.fixture
def tiny_unet3d():
    return make_tiny_unet3d


@pytest.fixture
def tiny_vae():
    return make_tiny_vae
