"""A miniature real-layout world, written at test time: the files a researcher puts on a GPU
machine, with random weights at tiny widths, in the official file formats.

* ModelScopeT2V: a `text-to-video-ms-1.7b` diffusers folder written by the pipeline's own
  `TextToVideoSDPipeline.save_pretrained` (`write_tiny_modelscope`);
* VideoCrafter2: a Lightning `model.ckpt` in LVDM's key layout (`tiny_vc2_state_dict`,
  `write_ckpt`);
* reward models: HPSv2.1 (`{'state_dict': ...}`, open_clip names), PickScore (a transformers
  CLIP folder + tokenizer folder), ViCLIP (`{'model': ...}`), InternVideo2 Stage-2 (DeepSpeed
  `{'module': ...}` with the training-only heads) + a BERT tokenizer folder;
* WebVid: a caption CSV (`videoid, contentUrl, duration, page_dir, name`) and mp4s under
  `videos/<page_dir>/<videoid>.mp4` at 24 fps (so both teachers need a frame stride: 3 for
  ModelScope's 8 fps, 2 for VideoCrafter2's 16 fps), one corrupt and one too short;
* `architectures.yaml`: the tiny widths, the `weights.architectures` file `bench` reads when
  the checkpoints are not full size (the real ones need none).

`build_miniworld(root)` writes all of it (a few seconds) and `train_config(world, teacher)`
the `bench train --config` YAML that names every file by config key; `env_vars(world,
teacher)` the documented environment variables instead.

Nothing here is shipped or downloaded: architectures come from configs, tokenizers from
open_clip's bundled BPE file or from tiny vocabularies written here.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from t2v_turbo_core.arch.internvideo2 import InternVideo2Config, InternVideo2Retrieval, bert_config
from t2v_turbo_core.arch.ldm_autoencoder import SD_VAE_DDCONFIG
from t2v_turbo_core.arch.viclip import ViCLIP, ViCLIPConfig
from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig
from t2v_turbo_core.teachers import VideoCrafter2Config

# --------------------------------------------------------------------------------------------
# Tiny configs: same module structure and key names as the real ones, a few thousand times smaller
# --------------------------------------------------------------------------------------------

TINY_UNET = VideoCrafter2UNetConfig(
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(1, 2),
    num_head_channels=16,
    context_dim=32,
    norm_num_groups=8,
    init_attn_heads=2,
)
# LDM's GroupNorms have 32 groups, so the tiny VAE keeps channels that are multiples of 32.
TINY_VAE_DD = dict(SD_VAE_DDCONFIG, ch=32, ch_mult=[1, 2], num_res_blocks=1, resolution=16)
TINY_OPENCLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 14, "layers": 1, "width": 64, "head_width": 64, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 3},
}
TINY_VC2 = VideoCrafter2Config(unet=TINY_UNET, vae_ddconfig=TINY_VAE_DD, text_model_cfg=TINY_OPENCLIP, latent_hw=(4, 6))

TEXT_WIDTH = 32  # the tiny ModelScope text encoder's width

TINY_HPS = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 8, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
TINY_VICLIP = ViCLIPConfig(vision_width=32, vision_layers=2, vision_heads=4, embed_dim=16, text_width=32, text_heads=4, text_layers=2)
TINY_BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "red", "fox", "running", "through", "snow",
                   "astronaut", "riding", "horse", "on", "the", "moon", "##s"]  # fmt: skip
TINY_IV2 = InternVideo2Config(
    width=64, depth=2, heads=4, mlp_hidden=128, clip_embed_dim=24, attn_pool_heads=4, embed_dim=16,
    text_vocab_size=len(TINY_BERT_VOCAB), text_width=32, text_layers=4, text_heads=4, text_intermediate=64,
    text_max_positions=64, fusion_layer=3,
)  # fmt: skip
# Sizes of the official training heads that retrieval never uses (reduced like the rest).
TINY_IV2_TEACHER_DIM, TINY_IV2_RETURN_LAYERS = 48, 2


def randn(shape, g, scale=0.05):
    return torch.randn(tuple(shape), generator=g) * scale


def _is_norm_weight(name: str) -> bool:
    return name.endswith("weight") and ("ln_" in name or "norm" in name.lower())


def randomise(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere (no zero-initialised layer hides a bug); norm gains near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if _is_norm_weight(name) else 0.0))
    return module


# --------------------------------------------------------------------------------------------
# VideoCrafter2: LVDM's model.ckpt
# --------------------------------------------------------------------------------------------


def ldm_vae_shapes(dd: dict, embed_dim: int = 4) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an LDM AutoencoderKL state dict, following ae_modules.py's Encoder/Decoder.

    Written from LDM's construction rules (not from the converter under test): resolution
    levels `down.{i}` / `up.{i}`, `nin_shortcut` where channels change, 1x1-conv mid attention.
    """
    ch, mult, nrb, z = dd["ch"], list(dd["ch_mult"]), dd["num_res_blocks"], dd["z_channels"]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def mid(part, c):
        resnet(f"{part}.mid.block_1", c, c)
        norm(f"{part}.mid.attn_1.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{part}.mid.attn_1.{p}", c, c, 1)
        resnet(f"{part}.mid.block_2", c, c)

    conv("encoder.conv_in", dd["in_channels"], ch, 3)
    c = ch
    for i, m in enumerate(mult):
        for j in range(nrb):
            resnet(f"encoder.down.{i}.block.{j}", c, ch * m)
            c = ch * m
        if i != len(mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    mid("encoder", c)
    norm("encoder.norm_out", c)
    conv("encoder.conv_out", c, 2 * z, 3)
    c = ch * mult[-1]
    conv("decoder.conv_in", z, c, 3)
    mid("decoder", c)
    for i in reversed(range(len(mult))):
        for j in range(nrb + 1):
            resnet(f"decoder.up.{i}.block.{j}", c, ch * mult[i])
            c = ch * mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c)
    conv("decoder.conv_out", c, dd["out_ch"], 3)
    conv("quant_conv", 2 * z, 2 * embed_dim, 1)
    conv("post_quant_conv", embed_dim, z, 1)
    return shapes


def ldm_schedule_buffers(linear_start=0.00085, linear_end=0.012, timesteps=1000) -> dict[str, torch.Tensor]:
    """LatentDiffusion's registered schedule buffers (lvdm/models/ddpm3d.py), float64 then float32."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1 - ac_prev) / (1 - ac)
    bufs = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1 - ac),
        "posterior_mean_coef2": (1 - ac_prev) * (1 - betas).sqrt() / (1 - ac),
        # use_scale: true, scale_b 0.7, mid_step 400 (the yaml; the "bug" branch: 400 + 1000 entries)
        "scale_arr": torch.cat([torch.linspace(1, 0.7, 400, dtype=torch.float64), torch.full((timesteps,), 0.7, dtype=torch.float64)]),
    }
    return {k: v.float() for k, v in bufs.items()}


def tiny_vc2_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random LatentDiffusion state dict in VideoCrafter2's layout, tiny config."""
    import open_clip

    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    with torch.device("meta"):
        unet = VideoCrafter2UNet(TINY_UNET)
        clip = open_clip.CLIP(**TINY_OPENCLIP)
    del clip.visual  # LVDM's FrozenOpenCLIPEmbedder deletes the vision tower before saving
    for k, v in unet.state_dict().items():
        sd[f"model.diffusion_model.{k}"] = randn(v.shape, g)
    for k, shape in ldm_vae_shapes(TINY_VAE_DD).items():
        sd[f"first_stage_model.{k}"] = randn(shape, g, 0.1)
    for k, v in clip.state_dict().items():
        sd[f"cond_stage_model.model.{k}"] = randn(v.shape, g, 0.1)
    sd.update(ldm_schedule_buffers())
    return sd


def write_ckpt(path: Path, state_dict: dict) -> Path:
    # The Lightning checkpoint envelope of VideoCrafter2's model.ckpt.
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "epoch": 0, "global_step": 0}, path)
    return path


# --------------------------------------------------------------------------------------------
# ModelScopeT2V: the diffusers folder
# --------------------------------------------------------------------------------------------


def clip_tokenizer(folder: Path):
    """A CLIPTokenizer with CLIP's real 49408-token BPE, written from open_clip's bundled copy."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    tok = SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({special.get(k, k): v for k, v in tok.encoder.items()}))
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def write_tiny_modelscope(
    root: Path,
    variant: str | None = None,
    safe_serialization: bool = True,
    slow_tokenizer_files: bool = True,
    sample_size: int | None = None,
) -> Path:
    """A tiny text-to-video-ms-1.7b: the pipeline's own save_pretrained writes the official layout.

    `sample_size`: the UNet's latent size (the official folder says 32, i.e. 256 pixels; None,
    diffusers' default, leaves the loader at ModelScope's 256 x 256).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1, cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8, norm_num_groups=8, sample_size=sample_size,
    )  # fmt: skip
    with torch.no_grad():  # diffusers zero-initialises a few layers; a trained teacher has none
        for p in unet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=8, sample_size=16,
    )  # fmt: skip
    text = CLIPTextModel(
        CLIPTextConfig(hidden_size=TEXT_WIDTH, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                       projection_dim=16, hidden_act="gelu", vocab_size=49408, max_position_embeddings=77)
    )  # fmt: skip
    # The official scheduler/scheduler_config.json: DDIM over LDM's scaled-linear betas.
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False)
    tok_dir = root.parent / f"{root.name}-tokenizer-files"
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=clip_tokenizer(tok_dir), unet=unet, scheduler=scheduler)
    pipe.save_pretrained(root, variant=variant, safe_serialization=safe_serialization)
    if slow_tokenizer_files:
        # The official repo's tokenizer/ holds vocab.json + merges.txt (transformers 5 saves tokenizer.json).
        for name in ("vocab.json", "merges.txt"):
            (root / "tokenizer" / name).write_bytes((tok_dir / name).read_bytes())
        (root / "tokenizer" / "tokenizer.json").unlink()
    return root


# --------------------------------------------------------------------------------------------
# Reward models
# --------------------------------------------------------------------------------------------


def write_hpsv21(path: Path, seed: int = 1, cfg: dict = TINY_HPS) -> Path:
    """HPS_v2.1_compressed.pt: {'state_dict': <open_clip CLIP state dict>}."""
    from t2v_turbo_core.reward_models import build_hps_model

    model = randomise(build_hps_model(cfg), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def write_clip_tokenizer_dir(folder: Path) -> Path:
    """`vocab.json` + `merges.txt` derived from open_clip's bundled CLIP BPE file.

    This is how CLIP's vocabulary is defined (byte symbols, their end-of-word forms, one entry
    per merge, then the two special tokens), so the folder matches the laion CLIP-H tokenizer.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def clip_config(text: dict, vision: dict, projection_dim: int):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={**text, "projection_dim": projection_dim, "hidden_act": "gelu"},
        vision_config={**vision, "projection_dim": projection_dim, "hidden_act": "gelu"},
        projection_dim=projection_dim,
    )


def tiny_pickscore_config():
    return clip_config(
        dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408),
        dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, patch_size=14, image_size=224),
        projection_dim=16,
    )


def write_pickscore(model_dir: Path, seed: int = 2) -> Path:
    """PickScore_v1: a transformers CLIPModel folder (config.json + model.safetensors)."""
    from transformers import CLIPModel

    model = randomise(CLIPModel(tiny_pickscore_config()), seed=seed)
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # ln(100), PickScore's value
    model.save_pretrained(model_dir)
    return model_dir


def write_viclip(path: Path, seed: int = 3, cfg: ViCLIPConfig = TINY_VICLIP) -> Path:
    """ViClip-InternVid-10M-FLT.pth: {'model': <official names>, ...}."""
    model = randomise(ViCLIP(cfg), seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "epoch": 9}, path)
    return path


def official_internvideo2_checkpoint(cfg: InternVideo2Config = TINY_IV2, seed: int = 4) -> dict:
    """A Stage-2 checkpoint in the official layout: DeepSpeed `{'module': ...}` holding
    `vision_encoder.*` (with the UMT distillation heads), `text_encoder.bert.*` (all layers,
    cross-attention from `fusion_layer` on, the `position_ids` buffer), the MLM head
    `text_encoder.cls.*`, `vision_proj`, `text_proj`, `itm_head` and `temp`."""
    from transformers import BertConfig, BertModel

    retrieval = randomise(InternVideo2Retrieval(cfg), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape):
        return torch.randn(shape, generator=g) * 0.05

    module = {k: v for k, v in retrieval.state_dict().items() if not k.startswith("text_encoder.")}
    w, t_dim, e = cfg.width, TINY_IV2_TEACHER_DIM, cfg.clip_embed_dim
    for i in range(TINY_IV2_RETURN_LAYERS):
        module.update({f"vision_encoder.clip_decoder.{i}.head.weight": rnd(t_dim, w), f"vision_encoder.clip_decoder.{i}.head.bias": rnd(t_dim),
                       f"vision_encoder.clip_decoder.{i}.norm.weight": rnd(t_dim), f"vision_encoder.clip_decoder.{i}.norm.bias": rnd(t_dim)})  # fmt: skip
    module.update({"vision_encoder.final_clip_decoder.head.weight": rnd(e, e), "vision_encoder.final_clip_decoder.head.bias": rnd(e),
                   "vision_encoder.final_clip_decoder.norm.weight": rnd(e), "vision_encoder.final_clip_decoder.norm.bias": rnd(e),
                   "vision_encoder.clip_pos_embed": rnd(*module["vision_encoder.pos_embed"].shape),
                   "vision_encoder.clip_img_pos_embed": rnd(*module["vision_encoder.img_pos_embed"].shape)})  # fmt: skip
    full_bert = randomise(BertModel(bert_config(cfg, BertConfig, text_path_only=False), add_pooling_layer=False), seed=seed + 2)
    bert = {f"text_encoder.bert.{k}": v for k, v in full_bert.state_dict().items()}
    h, enc = cfg.text_width, cfg.width  # cross-attention keys/values come from the vision width
    for i in range(cfg.fusion_layer, cfg.text_layers):
        c = f"text_encoder.bert.encoder.layer.{i}.crossattention."
        bert.update({c + "self.query.weight": rnd(h, h), c + "self.query.bias": rnd(h), c + "self.key.weight": rnd(h, enc),
                     c + "self.key.bias": rnd(h), c + "self.value.weight": rnd(h, enc), c + "self.value.bias": rnd(h),
                     c + "output.dense.weight": rnd(h, h), c + "output.dense.bias": rnd(h),
                     c + "output.LayerNorm.weight": rnd(h), c + "output.LayerNorm.bias": rnd(h)})  # fmt: skip
    bert["text_encoder.bert.embeddings.position_ids"] = torch.arange(cfg.text_max_positions)[None]
    v = cfg.text_vocab_size
    bert.update({"text_encoder.cls.predictions.bias": rnd(v), "text_encoder.cls.predictions.transform.dense.weight": rnd(h, h),
                 "text_encoder.cls.predictions.transform.dense.bias": rnd(h), "text_encoder.cls.predictions.transform.LayerNorm.weight": rnd(h),
                 "text_encoder.cls.predictions.transform.LayerNorm.bias": rnd(h), "text_encoder.cls.predictions.decoder.weight": rnd(v, h)})  # fmt: skip
    module.update(bert)
    module.update({"itm_head.weight": rnd(2, h), "itm_head.bias": rnd(2), "temp": torch.tensor(0.07)})
    # DeepSpeed model-state files carry bookkeeping next to 'module'.
    return {"module": module, "buffer_names": ["text_encoder.bert.embeddings.position_ids"], "ds_version": "0.14.0", "global_steps": 1}


def write_bert_tokenizer_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_BERT_VOCAB) + "\n")
    return folder


def write_internvideo2(path: Path, seed: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(official_internvideo2_checkpoint(TINY_IV2, seed=seed), path)
    return path


# --------------------------------------------------------------------------------------------
# WebVid-style data
# --------------------------------------------------------------------------------------------

NATIVE_FPS = 24  # WebVid's clips are mostly 24-30 fps: ModelScope (8 fps) strides 3, VC2 (16 fps) 2


def write_mp4(path: Path, frames: int, fps: int = NATIVE_FPS, width: int = 40, height: int = 32, seed: int = 0) -> Path:
    """A small moving-pattern mp4 (mpeg4, yuv420p)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for i in range(frames):
            img = np.roll(base, i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass(frozen=True)
class WebVidClip:
    videoid: str
    page_dir: str
    name: str
    kind: str  # good | corrupt | short

    def path(self, video_root: Path) -> Path:
        return video_root / self.page_dir / f"{self.videoid}.mp4"


WEBVID_CLIPS = (
    WebVidClip("1066678186", "051401_051450", "Aerial shot of a beach, waves rolling in", "good"),
    WebVidClip("1018932622", "051401_051450", "A red fox running through snow", "good"),
    WebVidClip("1025431049", "020601_020650", "Broken download, truncated file", "corrupt"),
    WebVidClip("1011234567", "020601_020650", "Two seconds too short", "short"),
    WebVidClip("1009876543", "020601_020650", "Timelapse of clouds over mountains", "good"),
)
GOOD_FRAMES = 48  # 2 s at 24 fps: MS needs (16 - 1) * 3 + 1 = 46 frames, VC2 (16 - 1) * 2 + 1 = 31
SHORT_FRAMES = 20  # fewer than either teacher's clip needs


def write_webvid(root: Path) -> tuple[Path, Path]:
    """(results_2M_train.csv-style caption file, video root) with `WEBVID_CLIPS`."""
    video_root = root / "videos"
    for n, clip in enumerate(WEBVID_CLIPS):
        path = clip.path(video_root)
        if clip.kind == "corrupt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
        else:
            write_mp4(path, GOOD_FRAMES if clip.kind == "good" else SHORT_FRAMES, seed=n)
    lines = ["videoid,contentUrl,duration,page_dir,name"]
    for clip in WEBVID_CLIPS:
        url = f"https://example.invalid/{clip.videoid}.mp4"  # never fetched
        lines.append(f'{clip.videoid},{url},PT00H00M02S,{clip.page_dir},"{clip.name}"')
    csv = root / "results_2M_train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, video_root


# --------------------------------------------------------------------------------------------
# The whole world
# --------------------------------------------------------------------------------------------


def architectures() -> dict:
    """The `weights.architectures` file's content: the tiny widths of every model."""

    def plain(x):
        return json.loads(json.dumps(x))  # tuples -> lists, as YAML stores them

    vc2 = {
        "unet": plain(TINY_UNET.to_dict()),
        "vae_ddconfig": plain(TINY_VAE_DD),
        "text_model_cfg": plain(TINY_OPENCLIP),
        "latent_hw": list(TINY_VC2.latent_hw),
    }
    return {
        "videocrafter2": vc2,
        "hpsv21": plain(TINY_HPS),
        "viclip": dataclasses.asdict(TINY_VICLIP),
        "internvideo2": dataclasses.asdict(TINY_IV2),
    }


@dataclass(frozen=True)
class MiniWorld:
    root: Path
    modelscope: Path
    videocrafter2: Path
    hpsv21: Path
    pickscore: Path
    pickscore_processor: Path
    viclip: Path
    internvideo2: Path
    internvideo2_tokenizer: Path
    architectures: Path
    annotations: Path
    video_root: Path

    def weights(self, teacher: str) -> dict[str, str]:
        """`weights.<name>` config keys: the teacher's and every reward model's files."""
        out = {"architectures": str(self.architectures)}
        out["modelscope_t2v" if teacher == "ms" else "videocrafter2"] = str(self.modelscope if teacher == "ms" else self.videocrafter2)
        for name in ("hpsv21", "pickscore", "pickscore_processor", "viclip", "internvideo2", "internvideo2_tokenizer"):
            out[name] = str(getattr(self, name))
        return out

    def data(self) -> dict[str, str]:
        return {"annotations": str(self.annotations), "video_root": str(self.video_root)}

    @property
    def bad_files(self) -> dict[str, str]:
        """{path: kind} of the clips training must skip."""
        return {str(c.path(self.video_root)): c.kind for c in WEBVID_CLIPS if c.kind != "good"}


def build_miniworld(root: Path) -> MiniWorld:
    """Every file of the miniature world under `root` (a few seconds on one core)."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    cache = root / "model_cache"
    arch = root / "architectures.yaml"
    arch.write_text(yaml.safe_dump(architectures(), sort_keys=False))
    annotations, video_root = write_webvid(root / "webvid")
    return MiniWorld(
        root=root,
        modelscope=write_tiny_modelscope(root / "text-to-video-ms-1.7b", sample_size=4),
        videocrafter2=write_ckpt(root / "VideoCrafter2" / "model.ckpt", tiny_vc2_state_dict()),
        hpsv21=write_hpsv21(cache / "HPS_v2.1_compressed.pt"),
        pickscore=write_pickscore(cache / "PickScore_v1"),
        pickscore_processor=write_clip_tokenizer_dir(cache / "CLIP-ViT-H-14-laion2B-s32B-b79K"),
        viclip=write_viclip(cache / "ViClip-InternVid-10M-FLT.pth"),
        internvideo2=write_internvideo2(cache / "InternVideo2-stage2_1b-224p-f4.pt"),
        internvideo2_tokenizer=write_bert_tokenizer_dir(cache / "bert-large-uncased"),
        architectures=arch,
        annotations=annotations,
        video_root=video_root,
    )


# Every documented environment variable of bench/weights.py, for tests that start clean.
WEIGHT_ENV_VARS = ("T2V_MS_DIR", "T2V_VC2_CKPT", "HPS_V21_CKPT", "PICKSCORE_DIR", "PICKSCORE_PROCESSOR_DIR",
                   "VICLIP_CKPT", "INTERNVIDEO2_CKPT", "INTERNVIDEO2_TOKENIZER_DIR")  # fmt: skip


def env_vars(world: MiniWorld, teacher: str) -> dict[str, str]:
    """The documented environment variables pointing at the world's files."""
    return {
        ("T2V_MS_DIR" if teacher == "ms" else "T2V_VC2_CKPT"): str(world.modelscope if teacher == "ms" else world.videocrafter2),
        "HPS_V21_CKPT": str(world.hpsv21),
        "PICKSCORE_DIR": str(world.pickscore),
        "PICKSCORE_PROCESSOR_DIR": str(world.pickscore_processor),
        "VICLIP_CKPT": str(world.viclip),
        "INTERNVIDEO2_CKPT": str(world.internvideo2),
        "INTERNVIDEO2_TOKENIZER_DIR": str(world.internvideo2_tokenizer),
    }


# Small settings so that a step takes a second or two on one CPU core.
SMOKE_SETTINGS = {
    "steps": 2, "lora_rank": 4, "lora_alpha": 4, "log_every": 1, "checkpoint_every": 1,
    "mixed_precision": "no", "image_reward_frames": 2,
}  # fmt: skip


def train_config(world: MiniWorld, teacher: str, path: Path, by_config_keys: bool = True, **extra) -> Path:
    """A `bench train --config` YAML: the shipped `ms`/`vc2` config with the world's files as
    `weights.*` / `data.*` keys (or, `by_config_keys=False`, only the architectures file: the
    weights then come from `env_vars`)."""
    import yaml

    from bench.config import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / f"{teacher}.yaml").read_text())
    cfg.update(SMOKE_SETTINGS)
    weights = world.weights(teacher) if by_config_keys else {"architectures": str(world.architectures)}
    cfg.update({"weights": weights, "data": world.data(), **extra})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def ablation_spec(train_config_path: Path, work_dir: Path, report: Path, limit: int = 2) -> dict:
    """A `bench ablate --config` spec over the world: VCM and T2V-Turbo, 2 steps, VBench's
    temporal_flickering on its first `limit` prompts, one video per prompt."""
    return {
        "name": "miniworld-ablation",
        "train_config": str(train_config_path),
        "variants": [{"variant": "vcm"}, {"variant": "vcm+img+vid", "rm_vid": "internvid2"}],
        "student_steps": 2,
        "teacher_steps": 2,
        "suite": "vbench",
        "dimensions": ["temporal_flickering"],
        "limit": limit,
        "benchmark": "vbench",
        "videos_per_prompt": 1,
        "generate_batch": 2,
        "jobs": 2,
        "bootstrap": 50,
        "work_dir": str(work_dir),
        "report": str(report),
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.real.miniworld DIR`: write the world and its configs, to run the
    README's commands by hand."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    world = build_miniworld(root)
    for teacher in ("ms", "vc2"):
        train_config(world, teacher, root / f"{teacher}.yaml")
    train_config(world, "vc2", root / "vc2-env.yaml", by_config_keys=False)
    spec = ablation_spec(root / "vc2.yaml", root / "runs" / "ablation", root / "reports" / "miniworld-ablation")
    (root / "ablate.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"wrote {root}: ms.yaml, vc2.yaml (weights and data by config keys), vc2-env.yaml (weights from these variables), ablate.yaml")
    for name, value in env_vars(world, "vc2").items():
        print(f"export {name}={value}")


if __name__ == "__main__":
    main()
