"""Which pretrained files each VBench dimension reads, and where (vbench 0.1.5).

VBench fetches a missing file itself (wget, urlretrieve, torch.hub, Hugging Face) the
moment a dimension initialises. We never want that: `missing_weights` is checked before
the VBench environment is even created, and the driver runs VBench offline.

The table follows vbench 0.1.5 with `init_submodules(..., local=True)`, the mode in which
every CLIP file is read from the cache folder instead of openai-clip's own cache:
* vbench/utils.py `init_submodules`: the per-dimension paths under `$VBENCH_CACHE_DIR`.
* vbench/aesthetic_quality.py `get_aesthetic_model`: the LAION head file name.
* vbench/third_party/ViCLIP/simple_tokenizer.py `default_bpe` and temporal_style.py /
  overall_consistency.py: the ViCLIP BPE vocabulary (fetched at import if absent).
* subject_consistency: VBench checks for `dino_model/dino_vitbase16_pretrain.pth`, but
  the DINO repo's own `hubconf.dino_vitb16` loads its weights with
  `torch.hub.load_state_dict_from_url`, i.e. from torch's hub cache; both must exist.
* scene (third_party/tag2Text/tag2text.py) loads the `bert-base-uncased` tokenizer and
  model through transformers; GRiT (grit_src/grit/modeling/roi_heads/grit_roi_heads.py)
  loads the tokenizer. Both come from the Hugging Face hub cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Dimensions whose model needs detectron2, which vbench does not declare as a dependency
# (its README installs it from git); the driver reports it missing, we do not install it.
NEEDS_DETECTRON2 = frozenset({"object_class", "multiple_objects", "color", "spatial_relationship"})


@dataclass(frozen=True)
class Requirement:
    """One file a dimension reads. `alternatives`: any one of these paths will do."""

    what: str
    alternatives: tuple[Path, ...]

    @property
    def path(self) -> Path:
        return self.alternatives[0]

    def present(self) -> bool:
        return any(p.is_file() for p in self.alternatives)

    def describe(self) -> str:
        if len(self.alternatives) == 1:
            return f"{self.what}: {self.path}"
        ors = " or ".join(str(p) for p in self.alternatives)
        return f"{self.what}: {ors}"


def vbench_cache_dir() -> Path:
    """`$VBENCH_CACHE_DIR`, else `~/.cache/vbench` (vbench/utils.py's CACHE_DIR)."""
    env = os.environ.get("VBENCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vbench"


def torch_hub_dir() -> Path:
    """Where torch.hub keeps downloads: `$TORCH_HOME/hub`, else `$XDG_CACHE_HOME/torch/hub`.

    Same rule as `torch.hub.get_dir()`, computed here so no torch import is needed.
    """
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        torch_home = os.path.join(xdg, "torch")
    return Path(torch_home).expanduser() / "hub"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache as transformers 4.33 / huggingface_hub resolve it."""
    for var in ("TRANSFORMERS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        hf_home = os.path.join(xdg, "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _hf_snapshot(repo: str) -> Path:
    """The snapshot folder `refs/main` points to, or a placeholder naming that rule."""
    repo_dir = hf_hub_cache_dir() / f"models--{repo.replace('/', '--')}"
    ref = repo_dir / "refs" / "main"
    try:
        revision = ref.read_text(encoding="utf-8").strip()
    except OSError:
        revision = "<revision in refs/main>"
    return repo_dir / "snapshots" / revision


def _bert(files: tuple[str, ...]) -> list[Requirement]:
    snap = _hf_snapshot("bert-base-uncased")
    reqs = [Requirement(f"bert-base-uncased {f} (Hugging Face cache)", (snap / f,)) for f in files]
    return reqs


def requirements_for(dimension: str) -> list[Requirement]:
    c = vbench_cache_dir()
    clip_b32 = Requirement("CLIP ViT-B/32", (c / "clip_model" / "ViT-B-32.pt",))
    grit = Requirement("GRiT-B DenseCap+ObjectDet", (c / "grit_model" / "grit_b_densecap_objectdet.pth",))
    viclip = [
        Requirement("ViCLIP InternVid-10M-FLT", (c / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth",)),
        Requirement("ViCLIP BPE vocabulary", (c / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz",)),
    ]
    dino_repo = c / "dino_model" / "facebookresearch_dino_main"
    table: dict[str, list[Requirement]] = {
        "subject_consistency": [
            Requirement("DINO repo (git clone of facebookresearch/dino)", (dino_repo / "hubconf.py",)),
            Requirement("DINO repo", (dino_repo / "vision_transformer.py",)),
            Requirement("DINO ViT-B/16 (checked by VBench)", (c / "dino_model" / "dino_vitbase16_pretrain.pth",)),
            Requirement(
                "DINO ViT-B/16 (loaded by dino's hubconf via torch.hub)",
                (torch_hub_dir() / "checkpoints" / "dino_vitbase16_pretrain.pth",),
            ),
        ],
        "background_consistency": [clip_b32],
        "temporal_flickering": [],
        "motion_smoothness": [Requirement("AMT-S", (c / "amt_model" / "amt-s.pth",))],
        "dynamic_degree": [Requirement("RAFT (things)", (c / "raft_model" / "models" / "raft-things.pth",))],
        "aesthetic_quality": [
            Requirement("CLIP ViT-L/14", (c / "clip_model" / "ViT-L-14.pt",)),
            Requirement(
                "LAION aesthetic head",
                (c / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth",),
            ),
        ],
        "imaging_quality": [Requirement("MUSIQ (SPAQ)", (c / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth",))],
        "object_class": [grit, *_bert(("vocab.txt",))],
        "multiple_objects": [grit, *_bert(("vocab.txt",))],
        "color": [grit, *_bert(("vocab.txt",))],
        "spatial_relationship": [grit, *_bert(("vocab.txt",))],
        "human_action": [
            Requirement("UMT-L/16 Kinetics-400", (c / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth",))
        ],
        "scene": [
            Requirement("Tag2Text Swin-B", (c / "caption_model" / "tag2text_swin_14m.pth",)),
            *_bert(("vocab.txt", "config.json")),
            Requirement(
                "bert-base-uncased weights (Hugging Face cache)",
                tuple(_hf_snapshot("bert-base-uncased") / f for f in ("model.safetensors", "pytorch_model.bin")),
            ),
        ],
        "appearance_style": [clip_b32],
        "temporal_style": viclip,
        "overall_consistency": viclip,
    }
    if dimension not in table:
        raise KeyError(dimension)
    return table[dimension]


def missing_weights(dimensions: list[str]) -> dict[str, list[Requirement]]:
    """{dimension: [missing requirements]} for the dimensions that lack something."""
    missing = {}
    for d in dimensions:
        lacking = [r for r in requirements_for(d) if not r.present()]
        if lacking:
            missing[d] = lacking
    return missing


def format_missing(missing: dict[str, list[Requirement]]) -> str:
    """One message listing every missing file once, with the dimensions that need it."""
    by_file: dict[str, list[str]] = {}
    for dim, reqs in missing.items():
        for r in reqs:
            by_file.setdefault(r.describe(), []).append(dim)
    lines = [
        f"VBench weights missing for {len(missing)} dimension(s): {', '.join(missing)}.",
        f"Expected under VBENCH_CACHE_DIR={vbench_cache_dir()} (and the caches named below).",
        "Nothing was downloaded; put these files in place and rerun:",
    ]
    for desc, dims in by_file.items():
        lines.append(f"  - {desc}   [{', '.join(dims)}]")
    return "\n".join(lines)
