"""Write random-weight VBench evaluator files in VBench's own layouts. Run by the VBench env's python.

    <vbench-env>/bin/python tests/helpers/vbench_random_evaluators.py --cache DIR --torch-home DIR --hf-home DIR NAME...

Each file is built with the model class VBench (or its dependency) loads it into, from the
same config VBench uses, then saved the way the published file is stored: a torch zip
checkpoint, with the extra objects published training checkpoints carry beside the state
dict where the loader reads a sub-key (AMT-S's `state_dict`: torch >= 2.6's weights_only
loading refuses such a file), a TorchScript archive for openai's CLIP files. Widths are the
real ones where VBench's code fixes the architecture (AMT-S, RAFT, MUSIQ); CLIP's
architecture is read back from the file by `clip.model.build_model`, so its files are tiny
(224-pixel input, the real patch size, vocabulary and output width).

Prints one JSON line per file: {"name", "path", "seconds", "bytes"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _training_extras() -> dict:
    """What a training script typically saves beside the weights (not plain tensors)."""
    return {
        "args": argparse.Namespace(lr=2e-4, epochs=300, exp_name="random"),
        "epoch": np.int64(300),
        "best_metric": np.float64(35.2),
    }


def _initialised(model: torch.nn.Module) -> torch.nn.Module:
    """Some model classes create parameters with torch.empty or zeros and leave their
    initialisation to a method VBench never calls (ViCLIP's text positions and projections):
    random values instead of whatever memory held (nan, or denormals that shrink every feature
    to about 1e-41 and make its normalisation nan) or zero matrices (same effect)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if not t.is_floating_point() or t.numel() == 0:
                continue
            a = t.abs()
            garbage = not torch.isfinite(t).all() or a.max() > 1e4 or ((a > 0) & (a < 1e-30)).any()
            if garbage or (t.dim() >= 2 and not t.any()):
                t.normal_(0.0, 0.02)
    return model


def amt(cache: Path) -> Path:
    from omegaconf import OmegaConf
    import vbench
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    cfg = Path(vbench.__file__).parent / "third_party" / "amt" / "cfgs" / "AMT-S.yaml"
    model = _initialised(build_from_cfg(OmegaConf.load(cfg).network))
    path = cache / "amt_model" / "amt-s.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), **_training_extras()}, path)
    return path


def raft(cache: Path) -> Path:
    from easydict import EasyDict
    from vbench.third_party.RAFT.core.raft import RAFT

    model = torch.nn.DataParallel(RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False)))
    # The flow head's last layer zeroed: flow is 0 everywhere, so every video is static and the
    # static filter's keep rule (the first 5 in name order) has a known answer; the rest is random.
    head = model.module.update_block.flow_head.conv2
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    path = cache / "raft_model" / "models" / "raft-things.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The published file is a DataParallel state dict ("module." keys): the static filter loads it
    # into DataParallel(RAFT), dynamic_degree strips the prefix.
    torch.save(model.state_dict(), path)
    return path


def _tiny_clip(embed_dim: int, patch: int):
    from clip.model import CLIP

    return CLIP(
        embed_dim=embed_dim, image_resolution=224, vision_layers=2, vision_width=64, vision_patch_size=patch,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2,
    ).eval()


def _save_clip_jit(model, path: Path) -> None:
    """openai's files are TorchScript archives; clip.load(jit=False) rebuilds from their state dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.zeros(1, 3, 224, 224)
    text = torch.zeros(1, 77, dtype=torch.long)
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    traced.save(str(path))


def clip_b32(cache: Path) -> Path:
    path = cache / "clip_model" / "ViT-B-32.pt"
    _save_clip_jit(_tiny_clip(512, 32), path)
    return path


def clip_l14(cache: Path) -> Path:
    path = cache / "clip_model" / "ViT-L-14.pt"
    _save_clip_jit(_tiny_clip(768, 14), path)  # 768: the LAION head's input width
    return path


def aesthetic(cache: Path) -> Path:
    path = cache / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.nn.Linear(768, 1).state_dict(), path)  # vbench/aesthetic_quality.py's head
    return path


def musiq(cache: Path) -> Path:
    from pyiqa.archs.musiq_arch import MUSIQ

    path = cache / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(MUSIQ(pretrained=False).state_dict(), path)
    return path


def bpe(cache: Path) -> Path:
    """ViCLIP's BPE vocabulary is openai CLIP's file, which the openai-clip package ships."""
    import shutil

    import clip

    path = cache / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz"), path)
    return path


def viclip(cache: Path) -> Path:
    """ViCLIP-L/14 at its real size (VBench's class fixes it); the file keeps it under 'model'."""
    from vbench.third_party.ViCLIP.simple_tokenizer import SimpleTokenizer
    from vbench.third_party.ViCLIP.viclip import ViCLIP

    tok = SimpleTokenizer(str(bpe(cache)))
    model = _initialised(ViCLIP(tokenizer=tok, pretrain=None))
    path = cache / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth"
    torch.save({"model": model.state_dict(), **_training_extras()}, path)
    return path


def umt(cache: Path) -> Path:
    """UMT-L/16 as vbench/human_action.py builds it (its own registered timm model)."""
    from timm.models import create_model
    from vbench.third_party.umt.models.modeling_finetune import vit_large_patch16_224  # noqa: F401  registers it

    model = create_model("vit_large_patch16_224", pretrained=False, num_classes=400, all_frames=16,
                         tubelet_size=1, use_learnable_pos_emb=False, fc_drop_rate=0., drop_rate=0.,
                         drop_path_rate=0.2, attn_drop_rate=0., drop_block_rate=None, use_checkpoint=False,
                         checkpoint_num=16, use_mean_pooling=True, init_scale=0.001)
    _initialised(model)
    path = cache / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)  # human_action.py loads the file itself as the state dict
    return path


DINO_URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
# A stand-in for the facebookresearch/dino checkout VBench loads with torch.hub (source="local"):
# the same entry point name and the same weight route (torch.hub's cache, by URL), with timm's
# ViT-B/16 (the DINO code itself is not available offline). VBench only calls
# `torch.hub.load(repo, "dino_vitb16", source="local", path=..., read_frame=...)` and `model(images)`.
DINO_HUBCONF = """
import torch
from vision_transformer import vit_base

dependencies = ["torch"]
URL = %r


def dino_vitb16(pretrained=True, **kwargs):
    model = vit_base(patch_size=16)
    if pretrained:
        state_dict = torch.hub.load_state_dict_from_url(url=URL, map_location="cpu")
        model.load_state_dict(state_dict, strict=True)
    return model
""" % DINO_URL
DINO_VIT = """
from timm.models.vision_transformer import VisionTransformer


def vit_base(patch_size=16, **kwargs):
    # num_classes=0: the class token's features, as DINO's backbone returns them
    return VisionTransformer(patch_size=patch_size, embed_dim=768, depth=12, num_heads=12, num_classes=0)
"""


def dino(cache: Path, torch_home: Path) -> Path:
    import importlib.util

    repo = cache / "dino_model" / "facebookresearch_dino_main"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "hubconf.py").write_text(DINO_HUBCONF)
    (repo / "vision_transformer.py").write_text(DINO_VIT)
    spec = importlib.util.spec_from_file_location("dino_vit_standin", repo / "vision_transformer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    state = mod.vit_base(16).state_dict()
    for path in (cache / "dino_model" / "dino_vitbase16_pretrain.pth",  # VBench checks this one
                 torch_home / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth"):  # torch.hub loads this one
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    return path


# Words for the stand-in BERT vocabulary: VBench's object and scene words, so that GRiT's and
# Tag2Text's tokenizers have real words to work with.
_WORDS = ("a an the of in on at and with to is are person people dog cat car bus bicycle bird horse boat "
          "train truck airplane chair couch bed table tv laptop bottle cup bowl banana apple pizza cake "
          "umbrella kite clock vase book red green blue yellow orange purple pink black white left right "
          "above below street beach forest kitchen ocean sky mountain river city road room water tree").split()


def bert(hf_home: Path) -> Path:
    """bert-base-uncased in the Hugging Face cache under its legacy id (what transformers 4.33 looks
    for): random weights of the real size, the real config, and a vocabulary with the real layout
    (30522 entries, [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103) and stand-in words."""
    from transformers import BertConfig, BertModel

    repo = hf_home / "hub" / "models--bert-base-uncased"
    revision = "0" * 40
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(dict.fromkeys(_WORDS))
    vocab += [f"##w{i}" for i in range(30522 - len(vocab))]
    (snap / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (snap / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    BertModel(BertConfig()).save_pretrained(snap)  # config.json + the weights file
    return snap / "vocab.txt"


def grit(cache: Path, hf_home: Path) -> Path:
    """GRiT-B (DenseCap + ObjectDet) built from VBench's own config by detectron2's build_model,
    saved as a detectron2 checkpoint ({"model": ...} plus the trainer's iteration)."""
    bert(hf_home)
    from detectron2.modeling import build_model
    from vbench.third_party.grit_src.image_dense_captions import get_parser, setup_cfg

    args = get_parser(torch.device("cpu"), model_weight="")
    args["test_task"] = "ObjectDet"
    model = _initialised(build_model(setup_cfg(args)))
    path = cache / "grit_model" / "grit_b_densecap_objectdet.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "iteration": np.int64(180000)}, path)
    return path


def tag2text(cache: Path, hf_home: Path) -> Path:
    """Tag2Text Swin-B/384 as vbench/scene.py builds it; its file keeps the weights under 'model'."""
    bert(hf_home)
    from vbench.third_party.tag2Text.tag2text import tag2text_caption

    model = _initialised(tag2text_caption(pretrained="", image_size=384, vit="swin_b"))
    path = cache / "caption_model" / "tag2text_swin_14m.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), **_training_extras()}, path)
    return path


MAKERS = {
    "amt": amt,
    "raft": raft,
    "clip_b32": clip_b32,
    "clip_l14": clip_l14,
    "aesthetic": aesthetic,
    "musiq": musiq,
    "bpe": bpe,
    "viclip": viclip,
    "umt": umt,
    "dino": dino,
    "grit": grit,
    "tag2text": tag2text,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", required=True, type=Path)
    p.add_argument("--torch-home", required=True, type=Path)
    p.add_argument("--hf-home", required=True, type=Path)
    p.add_argument("names", nargs="+", choices=sorted(MAKERS))
    args = p.parse_args(argv)
    os.environ["VBENCH_CACHE_DIR"] = str(args.cache)  # vbench.utils reads it at import
    os.environ["HF_HOME"] = str(args.hf_home)  # transformers reads it at import
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    for var in ("TRANSFORMERS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        os.environ.pop(var, None)
    torch.manual_seed(0)
    for name in args.names:
        started = time.time()
        maker = MAKERS[name]
        if name == "dino":
            path = maker(args.cache, args.torch_home)
        elif name in ("grit", "tag2text"):
            path = maker(args.cache, args.hf_home)
        else:
            path = maker(args.cache)
        print(json.dumps({"name": name, "path": str(path), "seconds": round(time.time() - started, 2),
                          "bytes": path.stat().st_size}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
