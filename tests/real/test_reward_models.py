"""The real reward models on random weights: official checkpoint layouts, strict loading,
gradients to pixels only, full-size parameter counts (meta device), preprocessing.

Nothing is downloaded: architectures come from configs, tokenizers from open_clip's bundled
BPE file or from tiny vocabularies written here.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach the Hub

import open_clip
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from transformers import BertConfig, BertModel, CLIPModel

from t2v_turbo_core.arch.internvideo2 import (
    InternVideo2Config,
    InternVideo2Retrieval,
    InternVideo2VisionEncoder,
    bert_config,
    interpolate_temporal_pos_embed,
)
from t2v_turbo_core.arch.viclip import ViCLIP, ViCLIPConfig
from t2v_turbo_core.models import VideoVAE
from t2v_turbo_core.reward_models import (
    HPSv21Reward,
    InternVideo2Reward,
    PickScoreReward,
    ViCLIPReward,
    build_hps_model,
    hps_preprocess,
    load_hpsv21,
    load_internvideo2,
    load_pickscore,
    load_viclip,
    pickscore_preprocess,
    video_reward_preprocess,
    viclip_tokenizer,
)
from t2v_turbo_core.rewards import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImageTextReward,
    VideoTextReward,
    mixed_reward_loss,
)

from tests.real.miniworld import TINY_BERT_VOCAB, TINY_HPS, TINY_IV2, TINY_VICLIP  # shared with the CLI tests
from tests.real.miniworld import clip_config as _clip_config
from tests.real.miniworld import official_internvideo2_checkpoint as _official_internvideo2_checkpoint
from tests.real.miniworld import randomise as _randomise
from tests.real.miniworld import write_clip_tokenizer_dir as _write_clip_tokenizer_dir

PROMPTS = ["a red fox running through snow", "an astronaut riding a horse on the moon"]


def _check_gradients(reward: torch.nn.Module, pixels: torch.Tensor, prompts, expected_shape):
    pixels = pixels.clone().requires_grad_(True)
    score = reward(pixels, prompts)
    assert score.shape == expected_shape and score.dtype == torch.float32
    assert torch.isfinite(score).all() and (score.abs() <= 1 + 1e-5).all()  # cosine similarities
    score.sum().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    assert not reward.training
    for name, p in reward.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    return score.detach()


# ------------------------------------------------------------------------------------ HPSv2.1


def test_hpsv21_loads_official_layout_strictly_and_scores_with_pixel_gradients(tmp_path):
    model = _randomise(build_hps_model(TINY_HPS), seed=1)
    # HPS_v2.1_compressed.pt: {'state_dict': <open_clip CLIP state dict>}; stored in half here
    # to check that a reduced-precision file still loads into the fp32 model.
    path = tmp_path / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": {k: v.half() for k, v in model.state_dict().items()}}, path)
    reward = load_hpsv21(path, "cpu", model_cfg=TINY_HPS)
    assert isinstance(reward, ImageTextReward) and isinstance(reward, HPSv21Reward)
    for k, v in model.state_dict().items():
        assert torch.equal(reward.model.state_dict()[k], v.half().float()), k

    images = torch.rand(3, 3, 48, 64)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    score = _check_gradients(reward, images, prompts, (3,))
    # The score is the cosine of normalised open_clip features, computed here independently.
    with torch.no_grad():
        tok = open_clip.get_tokenizer("ViT-H-14")(prompts)
        img = reward.model.encode_image(hps_preprocess(images), normalize=True)
        txt = reward.model.encode_text(tok, normalize=True)
    torch.testing.assert_close(score, (img * txt).sum(-1), rtol=1e-5, atol=1e-6)


def test_hpsv21_rejects_mismatched_checkpoint_and_names_missing_file(tmp_path):
    model = build_hps_model(TINY_HPS)
    state = model.state_dict()
    state["visual.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(ValueError, match="unexpected"):
        load_hpsv21(bad, "cpu", model_cfg=TINY_HPS)
    missing = tmp_path / "nowhere" / "HPS_v2.1_compressed.pt"
    with pytest.raises(FileNotFoundError, match="HPS_v2.1_compressed.pt") as err:
        load_hpsv21(missing, "cpu", model_cfg=TINY_HPS)
    assert str(missing) in str(err.value)


def test_checkpoints_that_need_unpickling_are_refused_unless_allowed(tmp_path):
    import argparse

    model = build_hps_model(TINY_HPS)
    path = tmp_path / "with_args.pt"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=1e-5)}, path)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_hpsv21(path, "cpu", model_cfg=TINY_HPS)
    assert isinstance(load_hpsv21(path, "cpu", model_cfg=TINY_HPS, allow_pickle=True), HPSv21Reward)


# ------------------------------------------------------------------------------------ PickScore


def test_pickscore_loads_local_folders_strictly_and_scores_cosine_or_logits(tmp_path):
    cfg = _clip_config(
        dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408),
        dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, patch_size=14, image_size=224),
        projection_dim=16,
    )
    model = _randomise(CLIPModel(cfg), seed=2)
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # ln(100), PickScore's value
    model_dir = tmp_path / "PickScore_v1"
    model.save_pretrained(model_dir)
    proc_dir = _write_clip_tokenizer_dir(tmp_path / "CLIP-ViT-H-14-laion2B-s32B-b79K")

    reward = load_pickscore(model_dir, proc_dir, "cpu")
    assert isinstance(reward, ImageTextReward) and isinstance(reward, PickScoreReward)
    images = torch.rand(2, 3, 40, 72)
    cosine = _check_gradients(reward, images, PROMPTS, (2,))
    # The tokenizer is CLIP's: the same ids as open_clip's tokenizer.
    hf_ids = reward.tokenizer(PROMPTS, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    oc_ids = open_clip.get_tokenizer("ViT-H-14")(PROMPTS)
    for a, b in zip(hf_ids, oc_ids):
        n = int((b != 0).sum())
        assert torch.equal(a[:n], b[:n])

    logits = load_pickscore(model_dir, proc_dir, "cpu", return_logits=True)(images, PROMPTS)
    torch.testing.assert_close(logits, cosine * 100.0, rtol=1e-3, atol=1e-4)

    with pytest.raises(FileNotFoundError, match="PickScore model"):
        load_pickscore(tmp_path / "missing", proc_dir)
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        load_pickscore(model_dir, tmp_path)


# ------------------------------------------------------------------------------------ ViCLIP


def _official_viclip_keys(cfg: ViCLIPConfig) -> dict[str, tuple[int, ...]]:
    """ViCLIP's state-dict keys and shapes as the official modules name them (viclip_*.py)."""
    keys: dict[str, tuple[int, ...]] = {"temp": ()}

    def blocks(prefix, width, layers):
        for i in range(layers):
            b = f"{prefix}.transformer.resblocks.{i}."
            keys.update({
                b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
                b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
                b + "ln_1.weight": (width,), b + "ln_1.bias": (width,), b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
                b + "mlp.c_fc.weight": (4 * width, width), b + "mlp.c_fc.bias": (4 * width,),
                b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,),
            })  # fmt: skip

    w, g = cfg.vision_width, cfg.image_size // cfg.patch_size
    keys.update({
        "vision_encoder.conv1.weight": (w, 3, 1, cfg.patch_size, cfg.patch_size),
        "vision_encoder.class_embedding": (w,),
        "vision_encoder.positional_embedding": (g * g + 1, w),
        "vision_encoder.temporal_positional_embedding": (1, cfg.num_frames, w),
        "vision_encoder.ln_pre.weight": (w,), "vision_encoder.ln_pre.bias": (w,),
        "vision_encoder.ln_post.weight": (w,), "vision_encoder.ln_post.bias": (w,),
        "vision_encoder.proj": (w, cfg.embed_dim),
        "text_encoder.token_embedding.weight": (cfg.vocab_size, cfg.text_width),
        "text_encoder.positional_embedding": (cfg.context_length, cfg.text_width),
        "text_encoder.ln_final.weight": (cfg.text_width,), "text_encoder.ln_final.bias": (cfg.text_width,),
        "text_encoder.text_projection": (cfg.text_width, cfg.embed_dim),
    })  # fmt: skip
    blocks("vision_encoder", w, cfg.vision_layers)
    blocks("text_encoder", cfg.text_width, cfg.text_layers)
    return keys


def test_viclip_has_official_layout_loads_strictly_and_scores_with_pixel_gradients(tmp_path):
    model = _randomise(ViCLIP(TINY_VICLIP), seed=3)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == _official_viclip_keys(TINY_VICLIP)
    path = tmp_path / "ViClip-InternVid-10M-FLT.pth"
    torch.save({"model": state, "epoch": 9}, path)

    reward = load_viclip(path, "cpu", config=TINY_VICLIP)
    assert isinstance(reward, VideoTextReward) and isinstance(reward, ViCLIPReward) and reward.num_frames == 8
    clips = torch.rand(2, 8, 3, 32, 48)
    score = _check_gradients(reward, clips, PROMPTS, (2,))
    # Frame order matters (temporal embedding): reversing the clip changes the score.
    assert not torch.allclose(reward(clips.flip(1), PROMPTS), score)
    with pytest.raises(ValueError, match="8 frames"):
        reward(clips[:, :4], PROMPTS)

    state["vision_encoder.extra"] = torch.zeros(1)
    del state["temp"]
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match="missing .*temp.*unexpected .*extra"):
        load_viclip(path, "cpu", config=TINY_VICLIP)


def test_viclip_tokenizer_is_clip_bpe_at_32_tokens_ending_with_end_of_text():
    tok = viclip_tokenizer()
    ids = tok(["a photo of a cat", "word " * 60])
    assert ids.shape == (2, 32)
    sot, eot = 49406, 49407
    assert ids[0, 0] == sot and ids[0, 6] == eot and (ids[0, 7:] == 0).all()
    assert ids[1, -1] == eot and (ids[1] != 0).all()  # truncated, end-of-text kept last
    assert torch.equal(ids[0, :7], open_clip.get_tokenizer("ViT-H-14")(["a photo of a cat"])[0, :7])


# ------------------------------------------------------------------------------------ InternVideo2


@pytest.fixture
def bert_tokenizer_dir(tmp_path):
    folder = tmp_path / "bert-large-uncased"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(TINY_BERT_VOCAB) + "\n")
    return folder


@pytest.mark.parametrize("num_frames", [4, 8])
def test_internvideo2_loads_official_layout_and_scores_with_pixel_gradients(tmp_path, bert_tokenizer_dir, num_frames):
    ckpt = _official_internvideo2_checkpoint(TINY_IV2)
    path = tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"
    torch.save(ckpt, path)
    reward = load_internvideo2(path, bert_tokenizer_dir, "cpu", num_frames=num_frames, config=TINY_IV2)
    assert isinstance(reward, VideoTextReward) and isinstance(reward, InternVideo2Reward) and reward.num_frames == num_frames

    module = ckpt["module"]
    used = {k for k in module if k not in reward.load_report.ignored}
    # Everything the retrieval features use came from the checkpoint, under the official names.
    assert len(used) == len(reward.model.state_dict())
    for key in used:
        ours = reward.model.state_dict()[key.replace("text_encoder.bert.", "text_encoder.")]
        if key == "vision_encoder.pos_embed":
            assert torch.equal(ours, interpolate_temporal_pos_embed(module[key], 4, num_frames))
        else:
            assert torch.equal(ours, module[key]), key
    reasons = {k.split(".")[0] + ":" + why for k, why in reward.load_report.ignored.items()}
    assert reasons == {
        "vision_encoder:vision distillation head (training only)",
        "text_encoder:position id buffer",
        "text_encoder:video-text fusion (cross-attention)",
        "text_encoder:video-text fusion layer (not on the text path)",
        "text_encoder:text head (MLM)",
        "itm_head:not part of the retrieval features",
        "temp:not part of the retrieval features",
    }

    clips = torch.rand(2, num_frames, 3, 40, 56)
    _check_gradients(reward, clips, PROMPTS, (2,))


def test_internvideo2_temporal_interpolation_is_linear_in_time_and_keeps_the_class_token():
    grid, d = 2, 3
    table = torch.randn(1, 1 + 4 * grid * grid, d)
    out = interpolate_temporal_pos_embed(table, 4, 8)
    assert out.shape == (1, 1 + 8 * grid * grid, d)
    assert torch.equal(out[:, 0], table[:, 0])
    old, new = table[0, 1:].view(4, grid * grid, d), out[0, 1:].view(8, grid * grid, d)
    # F.interpolate(linear, align_corners=False) from 4 to 8: new frame j samples old position
    # (j + 0.5) / 2 - 0.5, clamped at the ends.
    for j in range(8):
        x = min(max((j + 0.5) / 2 - 0.5, 0.0), 3.0)
        lo = int(x)
        hi = min(lo + 1, 3)
        torch.testing.assert_close(new[j], old[lo] * (1 - (x - lo)) + old[hi] * (x - lo))


def test_internvideo2_rejects_missing_and_unknown_tower_weights(tmp_path, bert_tokenizer_dir):
    ckpt = _official_internvideo2_checkpoint(TINY_IV2)
    del ckpt["module"]["vision_proj.weight"]
    ckpt["module"]["vision_encoder.blocks.0.attn.extra"] = torch.zeros(1)
    path = tmp_path / "iv2.pt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="missing .*vision_proj.weight.*unexpected .*blocks.0.attn.extra"):
        load_internvideo2(path, bert_tokenizer_dir, "cpu", config=TINY_IV2)
    with pytest.raises(FileNotFoundError, match="BERT tokenizer"):
        load_internvideo2(path, tmp_path / "no-tokenizer", "cpu", config=TINY_IV2)
    with pytest.raises(FileNotFoundError, match="InternVideo2 checkpoint"):
        load_internvideo2(tmp_path / "none.pt", bert_tokenizer_dir, "cpu", config=TINY_IV2)


def test_internvideo2_text_path_uses_fusion_layer_layers_cls_token_and_mask(bert_tokenizer_dir):
    from transformers import BertTokenizer

    model = _randomise(InternVideo2Retrieval(TINY_IV2), seed=5).eval()
    assert len(model.text_encoder.encoder.layer) == TINY_IV2.fusion_layer
    tok = BertTokenizer.from_pretrained(bert_tokenizer_dir, local_files_only=True)
    enc = tok(["a red fox", "a red fox"], padding="max_length", max_length=40, return_tensors="pt")
    enc["attention_mask"][1, 5:] = 1  # padding made visible must change the [CLS] feature
    with torch.no_grad():
        out = model.encode_text(enc["input_ids"], enc["attention_mask"])
    assert out.shape == (2, TINY_IV2.embed_dim) and not torch.allclose(out[0], out[1])


# ------------------------------------------------------------------------------------ full sizes


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts_match_published_sizes():
    """Published sizes (all on the meta device; nothing is materialised):

    * ViT-H-14 (HPSv2.1, and PickScore's CLIP-H): 986.11M total, 632.08M image, 354.03M text —
      open_clip `docs/model_profile.csv`.
    * ViCLIP-L: open_clip's ViT-L-14 (427.62M: 303.97M image + 123.65M text, same table) plus
      the 8 x 1024 temporal embedding, minus 45 x 768 text positions (context 32, not 77).
    * InternVideo2-1B vision: "1B" (InternVideo2 paper, arXiv 2403.15377); the same width, depth
      and MLP as EVA's ViT-g/14 (1012.65M image tower in open_clip's table), without qkv biases
      and with an attention-pooling head: 1.02B.
    * BERT-large: 340M in Devlin et al. (2019, google-research/bert README); exactly 335,141,888
      in transformers' `BertModel` with the pooler (the `bert-large-uncased` model card's 336M).
    """
    with torch.device("meta"):
        hps = build_hps_model()
        clip_h = CLIPModel(_clip_config(
            dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24, vocab_size=49408),
            dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32, patch_size=14, image_size=224),
            projection_dim=1024,
        ))  # fmt: skip  (laion/CLIP-ViT-H-14-laion2B-s32B-b79K config.json = PickScore_v1's)
        viclip = ViCLIP(ViCLIPConfig())
        vit_l = open_clip.model.CLIP(**open_clip.get_model_config("ViT-L-14"))
        iv2_vision = InternVideo2VisionEncoder(InternVideo2Config())
        iv2 = InternVideo2Retrieval(InternVideo2Config(num_frames=8))
        bert_large = BertModel(bert_config(InternVideo2Config(), BertConfig, text_path_only=False))

    assert _count(hps) == 986_109_441  # 986.11M
    assert round(_count(hps.visual) / 1e6, 2) == 632.08
    assert _count(clip_h) == _count(hps)

    assert round(_count(vit_l) / 1e6, 2) == 427.62
    assert _count(viclip.vision_encoder) == _count(vit_l.visual) + 8 * 1024
    assert _count(viclip) == _count(vit_l) + 8 * 1024 - (77 - 32) * 768 == 427_590_145

    assert _count(iv2_vision) == 1_019_628_672  # 1.02B
    assert 1.0e9 < _count(iv2_vision) < 1.05e9
    assert _count(bert_large) == 335_141_888
    # The retrieval text path is BERT-large's first 19 layers without the pooler.
    per_layer = 4 * 1024 * 1024 + 2 * 1024 * 4096 + 9 * 1024 + 4096  # q/k/v/o, FFN, biases, 2 LayerNorms
    assert _count(iv2.text_encoder) == _count(bert_large) - (1024 * 1024 + 1024) - 5 * per_layer
    # 8 frames: the position table grows by 4 x 256 tokens, nothing else changes.
    assert _count(iv2.vision_encoder) == _count(iv2_vision) + 4 * 256 * 1408


# ------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("hw", [(48, 64), (64, 40), (37, 53), (300, 224)])
def test_hps_preprocessing_matches_hpsv2_resize_max_size(hw):
    """HPSv2's `ResizeMaxSize(224)` + normalisation (hpsv2/src/open_clip/transform.py)."""
    images = torch.rand(2, 3, *hw)
    h, w = hw
    scale = 224 / max(h, w)
    new = (round(h * scale), round(w * scale))
    ref = TF.resize(images, list(new), interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    ph, pw = 224 - new[0], 224 - new[1]
    ref = TF.pad(ref, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
    ref = T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)(ref)
    torch.testing.assert_close(hps_preprocess(images), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hw", [(48, 64), (64, 40), (37, 53), (256, 256)])
def test_pickscore_preprocessing_matches_torchvision_resize_center_crop_normalize(hw):
    images = torch.rand(2, 3, *hw)
    ref = T.Compose([
        T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.CenterCrop(224),
        T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    ])(images)  # fmt: skip
    torch.testing.assert_close(pickscore_preprocess(images), ref, rtol=0, atol=1e-5)
    # T2V-Turbo's variant squashes to 224 x 224 first.
    squash = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(224),
                        T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])(images)  # fmt: skip
    torch.testing.assert_close(pickscore_preprocess(images, resize="square"), squash, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hw", [(48, 64), (64, 40), (37, 53), (320, 512)])
def test_video_reward_preprocessing_matches_t2v_turbo_resize_crop_min_size(hw):
    """T2V-Turbo's `ResizeCropMinSize(224)` (round(dim * scale)) with a centre crop, ImageNet stats."""
    frames = torch.rand(2, 4, 3, *hw)
    h, w = hw
    scale = 224 / min(h, w)
    flat = frames.flatten(0, 1)
    ref = TF.resize(flat, [round(h * scale), round(w * scale)], interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    ref = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(T.CenterCrop(224)(ref)).view(2, 4, 3, 224, 224)
    torch.testing.assert_close(video_reward_preprocess(frames), ref, rtol=0, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    assert video_reward_preprocess(frames, random=True, generator=g).shape == (2, 4, 3, 224, 224)


# ------------------------------------------------------------------------------------ in the method


def test_real_reward_wrappers_drive_the_mixed_reward_loss(tmp_path):
    """HPSv2.1 + ViCLIP (tiny) through `mixed_reward_loss`: the gradient reaches the latents."""
    from tests.core.conftest import make_tiny_vae

    hps = HPSv21Reward(_randomise(build_hps_model(TINY_HPS), seed=6), open_clip.get_tokenizer("ViT-H-14"))
    viclip = ViCLIPReward(_randomise(ViCLIP(TINY_VICLIP), seed=7), viclip_tokenizer())
    vae = VideoVAE(make_tiny_vae(), scaling_factor=0.18215)
    latents = torch.randn(1, 4, 8, 4, 4, requires_grad=True)
    terms = mixed_reward_loss(latents, PROMPTS[:1], vae, hps, viclip, beta_img=2.0, beta_vid=3.0, image_frames=2,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.isfinite(terms.loss)
    terms.loss.backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_pixel_gradients(bert_tokenizer_dir):
    from transformers import BertTokenizer

    viclip = ViCLIPReward(_randomise(ViCLIP(TINY_VICLIP), seed=8), viclip_tokenizer())
    iv2 = InternVideo2Reward(
        _randomise(InternVideo2Retrieval(TINY_IV2), seed=9), BertTokenizer.from_pretrained(bert_tokenizer_dir, local_files_only=True)
    )
    hps = HPSv21Reward(_randomise(build_hps_model(TINY_HPS), seed=10), open_clip.get_tokenizer("ViT-H-14"))
    cases = [(viclip, torch.rand(1, 8, 3, 24, 24)), (iv2, torch.rand(1, 4, 3, 24, 24)), (hps, torch.rand(2, 3, 24, 24))]
    for reward, pixels in cases:
        grads = []
        for enable in (False, True):
            reward.model.set_grad_checkpointing(enable)
            x = pixels.clone().requires_grad_(True)
            reward(x, PROMPTS[: x.shape[0]]).sum().backward()
            grads.append(x.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_reward_weight_specs_resolve_from_environment(tmp_path):
    from bench.weights import REWARD_WEIGHTS, WEIGHT_SPECS, resolve_weights, reward_requirements

    (tmp_path / "HPS_v2.1_compressed.pt").write_bytes(b"x")
    (tmp_path / "ViClip-InternVid-10M-FLT.pth").write_bytes(b"x")
    (tmp_path / "iv2.pt").write_bytes(b"x")
    for d, files in {"pick": ["config.json", "model.safetensors"], "proc": ["tokenizer.json"], "bert": ["vocab.txt"]}.items():
        (tmp_path / d).mkdir()
        for f in files:
            (tmp_path / d / f).write_text("{}")
    env = {
        "HPS_V21_CKPT": str(tmp_path / "HPS_v2.1_compressed.pt"), "VICLIP_CKPT": str(tmp_path / "ViClip-InternVid-10M-FLT.pth"),
        "INTERNVIDEO2_CKPT": str(tmp_path / "iv2.pt"), "PICKSCORE_DIR": str(tmp_path / "pick"),
        "PICKSCORE_PROCESSOR_DIR": str(tmp_path / "proc"), "INTERNVIDEO2_TOKENIZER_DIR": str(tmp_path / "bert"),
        "HF_HUB_CACHE": str(tmp_path / "no-hub"),
    }  # fmt: skip
    required = {name: spec for reward in REWARD_WEIGHTS for name, spec in reward_requirements(reward).items()}
    assert set(required) <= set(WEIGHT_SPECS) and len(required) == 6
    found = resolve_weights(required, environ=env)
    assert found["pickscore"] == tmp_path / "pick" and found["internvideo2_tokenizer"] == tmp_path / "bert"
