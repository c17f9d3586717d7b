"""The tiny teacher's UNet as a class that diffusers can save and load by itself.

The tiny world's teacher is diffusers' `UNet3DConditionModel` plus a learned spatial position
bias on every spatial transformer block (`models.add_spatial_position_bias`), a module that
diffusers' config has no option for: `UNet3DConditionModel.from_pretrained` would drop its
weights. This subclass adds the bias in its constructor, so that a diffusers folder that
names it (`model_index.json`: `["bench.tinyworld.unet3d", "TinyWorldUNet3DConditionModel"]`)
loads with `TextToVideoSDPipeline.from_pretrained` wherever the `bench` package is installed.
"""

from __future__ import annotations

import functools

from diffusers import ModelMixin, UNet3DConditionModel

from bench.tinyworld.models import add_spatial_position_bias


# diffusers' pipeline loader finds a custom component's load method by looking its base class
# (`ModelMixin`) up in the component's module: it has to be importable from here.
__all__ = ["ModelMixin", "TinyWorldUNet3DConditionModel"]


class TinyWorldUNet3DConditionModel(UNet3DConditionModel):
    """`UNet3DConditionModel` + the tiny world's `SpatialPositionBias` (zero until loaded)."""

    # wraps: diffusers reads the config keys off the constructor's signature, which must stay
    # UNet3DConditionModel's own.
    @functools.wraps(UNet3DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_spatial_position_bias(self)
