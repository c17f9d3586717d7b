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

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Dimensions whose model needs detectron2, which vbench does not declare as a dependency
# (its README installs it from git); bench/vbench/env.py `ensure_detectron2` provides it.
NEEDS_DETECTRON2 = frozenset({"object_class", "multiple_objects", "color", "spatial_relationship"})


@dataclass(frozen=True)
class Requirement:
    """One file a dimension reads. `alternatives`: any one of these paths will do.

    `source`: where to get it (VBench's own download URL, or the maintained mirror where that
    URL is dead). `sha256` / `sha256_prefix`: the file's hash where it is published (openai's
    CLIP URLs carry the full sha256, pyiqa's file names its first 8 hex digits); such a file
    is hashed, and a mismatch (a truncated download) counts as missing. Other `.pth` files
    saved by torch >= 1.6 are zip archives: one whose central directory is gone (a cut-off
    download) counts as missing too.
    """

    what: str
    alternatives: tuple[Path, ...]
    source: str = ""
    sha256: str | None = None
    sha256_prefix: str | None = None

    @property
    def path(self) -> Path:
        return self.alternatives[0]

    def present(self, verify_hashes: bool = True) -> bool:
        return any(p.is_file() and self.problem(p, verify_hashes) is None for p in self.alternatives)

    def problem(self, path: Path, verify_hashes: bool = True) -> str | None:
        """Why an existing file at `path` is not usable, or None."""
        if (self.sha256 or self.sha256_prefix) and verify_hashes:
            digest = _sha256_cached(path)
            want = self.sha256 or self.sha256_prefix
            if not digest.startswith(want):
                return f"sha256 {digest[:16]}... does not match the published {want[:16]}... (truncated or a different file)"
            return None
        if path.suffix in (".pth", ".pt") and path.stat().st_size >= 4:
            with open(path, "rb") as f:
                head = f.read(4)
            if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
                return "a torch zip archive without its end (a truncated download)"
        return None

    def describe(self, verify_hashes: bool = True) -> str:
        bad = [f"{p} ({why})" for p in self.alternatives
               if p.is_file() and (why := self.problem(p, verify_hashes))]
        where = " or ".join(str(p) for p in self.alternatives)
        text = f"{self.what}: {where}"
        if bad:
            text += f"\n      present but unusable: {'; '.join(bad)}"
        if self.source:
            text += f"\n      get it from: {self.source}"
        return text


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256_cached(path: Path) -> str:
    """sha256 of a file, once per (path, size, mtime) in this process (CLIP L/14 is 890 MB)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


# Where each file comes from (vbench 0.1.5's own URLs, vbench/utils.py init_submodules and the
# dimension modules, except GRiT: 0.1.5's datarelease.blob.core.windows.net URL is dead and the
# maintained copy is VBench's Hugging Face mirror, as VBench's later code uses).
_VBENCH_HF = "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main"
CLIP_B32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
CLIP_L14_SHA256 = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"
SOURCES = {
    "dino_repo": "git clone https://github.com/facebookresearch/dino <VBENCH_CACHE_DIR>/dino_model/facebookresearch_dino_main",
    "dino": "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    "clip_b32": f"https://openaipublic.azureedge.net/clip/models/{CLIP_B32_SHA256}/ViT-B-32.pt",
    "clip_l14": f"https://openaipublic.azureedge.net/clip/models/{CLIP_L14_SHA256}/ViT-L-14.pt",
    "amt": "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth",
    "raft": "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzip into <VBENCH_CACHE_DIR>/raft_model/)",
    "aesthetic": "https://github.com/LAION-AI/aesthetic-predictor/blob/main/sa_0_4_vit_l_14_linear.pth?raw=true",
    "musiq": "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
    "grit": f"{_VBENCH_HF}/grit_b_densecap_objectdet.pth (Hugging Face OpenGVLab/VBench_Used_Models; "
            "vbench 0.1.5's own URL is dead)",
    "umt": f"{_VBENCH_HF}/l16_ptk710_ftk710_ftk400_f16_res224.pth",
    "tag2text": "https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/tag2text_swin_14m.pth",
    "viclip": f"{_VBENCH_HF}/ViClip-InternVid-10M-FLT.pth",
    "bpe": "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz",
    "bert": "Hugging Face google-bert/bert-base-uncased, cached under its legacy id: "
            "`huggingface-cli download bert-base-uncased vocab.txt config.json model.safetensors` "
            "(transformers 4.33 looks for models--bert-base-uncased)",
}


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
    reqs = [Requirement(f"bert-base-uncased {f} (Hugging Face cache)", (snap / f,), SOURCES["bert"]) for f in files]
    return reqs


def requirements_for(dimension: str) -> list[Requirement]:
    c = vbench_cache_dir()
    clip_b32 = Requirement("CLIP ViT-B/32", (c / "clip_model" / "ViT-B-32.pt",), SOURCES["clip_b32"], sha256=CLIP_B32_SHA256)
    grit = Requirement("GRiT-B DenseCap+ObjectDet", (c / "grit_model" / "grit_b_densecap_objectdet.pth",), SOURCES["grit"])
    viclip = [
        Requirement("ViCLIP InternVid-10M-FLT", (c / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth",), SOURCES["viclip"]),
        Requirement("ViCLIP BPE vocabulary", (c / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz",), SOURCES["bpe"]),
    ]
    dino_repo = c / "dino_model" / "facebookresearch_dino_main"
    table: dict[str, list[Requirement]] = {
        "subject_consistency": [
            Requirement("DINO repo (git clone of facebookresearch/dino)", (dino_repo / "hubconf.py",), SOURCES["dino_repo"]),
            Requirement("DINO repo", (dino_repo / "vision_transformer.py",), SOURCES["dino_repo"]),
            Requirement("DINO ViT-B/16 (checked by VBench)", (c / "dino_model" / "dino_vitbase16_pretrain.pth",), SOURCES["dino"]),
            Requirement(
                "DINO ViT-B/16 (loaded by dino's hubconf via torch.hub)",
                (torch_hub_dir() / "checkpoints" / "dino_vitbase16_pretrain.pth",),
                SOURCES["dino"] + " (the same file, a second copy)",
            ),
        ],
        "background_consistency": [clip_b32],
        "temporal_flickering": [],
        "motion_smoothness": [Requirement("AMT-S", (c / "amt_model" / "amt-s.pth",), SOURCES["amt"])],
        "dynamic_degree": static_filter_requirements(),
        "aesthetic_quality": [
            Requirement("CLIP ViT-L/14", (c / "clip_model" / "ViT-L-14.pt",), SOURCES["clip_l14"], sha256=CLIP_L14_SHA256),
            Requirement(
                "LAION aesthetic head",
                (c / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth",),
                SOURCES["aesthetic"],
            ),
        ],
        "imaging_quality": [Requirement("MUSIQ (SPAQ)", (c / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth",), SOURCES["musiq"],
                                        sha256_prefix="358bb6af")],
        "object_class": [grit, *_bert(("vocab.txt",))],
        "multiple_objects": [grit, *_bert(("vocab.txt",))],
        "color": [grit, *_bert(("vocab.txt",))],
        "spatial_relationship": [grit, *_bert(("vocab.txt",))],
        "human_action": [
            Requirement("UMT-L/16 Kinetics-400", (c / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth",), SOURCES["umt"])
        ],
        "scene": [
            Requirement("Tag2Text Swin-B", (c / "caption_model" / "tag2text_swin_14m.pth",), SOURCES["tag2text"]),
            *_bert(("vocab.txt", "config.json")),
            Requirement(
                "bert-base-uncased weights (Hugging Face cache)",
                tuple(_hf_snapshot("bert-base-uncased") / f for f in ("model.safetensors", "pytorch_model.bin")),
                SOURCES["bert"],
            ),
        ],
        "appearance_style": [clip_b32],
        "temporal_style": viclip,
        "overall_consistency": viclip,
    }
    if dimension not in table:
        raise KeyError(dimension)
    return table[dimension]


def static_filter_requirements() -> list[Requirement]:
    """RAFT, read by dynamic_degree and by VBench's static filter (cli/static_filter.py)."""
    c = vbench_cache_dir()
    return [Requirement("RAFT (things)", (c / "raft_model" / "models" / "raft-things.pth",), SOURCES["raft"])]


def missing_weights(dimensions: list[str], verify_hashes: bool = True) -> dict[str, list[Requirement]]:
    """{dimension: [missing or unusable requirements]} for the dimensions that lack something."""
    missing = {}
    for d in dimensions:
        lacking = [r for r in requirements_for(d) if not r.present(verify_hashes)]
        if lacking:
            missing[d] = lacking
    return missing


def format_missing(missing: dict[str, list[Requirement]], verify_hashes: bool = True) -> str:
    """One message listing every missing file once, with the dimensions that need it."""
    by_file: dict[str, list[str]] = {}
    for dim, reqs in missing.items():
        for r in reqs:
            by_file.setdefault(r.describe(verify_hashes), []).append(dim)
    lines = [
        f"VBench weights missing or unusable for {len(missing)} dimension(s): {', '.join(missing)}.",
        f"Expected under VBENCH_CACHE_DIR={vbench_cache_dir()} (and the caches named below).",
        "Nothing was downloaded; put these files in place and rerun:",
    ]
    for desc, dims in by_file.items():
        lines.append(f"  - {desc}   [{', '.join(dims)}]")
    return "\n".join(lines)
