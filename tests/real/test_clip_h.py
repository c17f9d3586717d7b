"""CLIP-H (open_clip ViT-H-14 laion2B layout) at tiny width with random weights, and the v2
image reward mix: preprocessing as the released CLIP score, strict loading of both official
file layouts, clear errors for a missing or torn file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from t2v_turbo_core.clip_h import WeightedImageReward, clip_h_preprocess, load_clip_h
from t2v_turbo_core.reward_models import build_hps_model, load_hpsv21
from tests.real.miniworld import TINY_HPS, randomise, write_hpsv21


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliph")
    model = randomise(build_hps_model(TINY_HPS), seed=5)
    state = model.state_dict()
    torch.save(state, root / "open_clip_pytorch_model.bin")  # a bare state dict, as the HF repo's file
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "open_clip_model.safetensors"))
    return root, model


def test_preprocess_is_the_released_resize_and_normalize():
    from torchvision.transforms import InterpolationMode, Normalize, Resize

    x = torch.rand(2, 3, 40, 64, generator=torch.Generator().manual_seed(0))
    ref = Normalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])(
        Resize((224, 224), interpolation=InterpolationMode.BICUBIC, antialias=True)(x))
    torch.testing.assert_close(clip_h_preprocess(x), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"])
def test_score_is_the_cosine_of_the_laion_layout_model(clip_files, name):
    root, model = clip_files
    reward = load_clip_h(root / name, model_cfg=TINY_HPS)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    prompts = ["a red circle", "a blue square"]
    score = reward(images, prompts)
    with torch.no_grad():
        img = F.normalize(model.encode_image(clip_h_preprocess(images)), dim=-1)
        txt = F.normalize(model.encode_text(reward.tokenizer(prompts)), dim=-1)
    torch.testing.assert_close(score.detach(), (img * txt).sum(-1), rtol=1e-5, atol=1e-6)
    score.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # differentiable in the pixels


def test_weighted_mix_and_bad_files(clip_files, tmp_path):
    root, _ = clip_files
    clip = load_clip_h(root / "open_clip_pytorch_model.bin", model_cfg=TINY_HPS)
    hps = load_hpsv21(write_hpsv21(tmp_path / "HPS_v2.1_compressed.pt", cfg=TINY_HPS), model_cfg=TINY_HPS)
    mix = WeightedImageReward([hps, clip], [1.0, 5.0])
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    prompts = ["a red circle", "a blue square"]
    with torch.no_grad():
        torch.testing.assert_close(mix(images, prompts), hps(images, prompts) + 5.0 * clip(images, prompts))
    with pytest.raises(FileNotFoundError, match="CLIP_H_CKPT"):
        load_clip_h(tmp_path / "missing.bin", model_cfg=TINY_HPS)
    torn = tmp_path / "open_clip_model.safetensors"
    torn.write_bytes((root / "open_clip_model.safetensors").read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated"):
        load_clip_h(torn, model_cfg=TINY_HPS)
    with pytest.raises(ValueError, match="does not match"):
        load_clip_h(root / "open_clip_pytorch_model.bin", model_cfg={**TINY_HPS, "embed_dim": 8})
    with pytest.raises(ValueError, match="weights"):
        WeightedImageReward([hps, clip], [1.0])
