"""Where the pretrained files a recipe needs come from: one registry, one resolver, one error.

`WEIGHT_SPECS` names every pretrained file or folder the harness can use (the teachers here;
reward models and benchmark caches are added as further entries). `resolve_weights(required)`
finds each one, in this order:

1. an explicit path from the recipe config (`explicit={name: path}`);
2. the spec's environment variables (e.g. `T2V_MS_DIR`, `T2V_VC2_CKPT`), first one set;
3. the spec's conventional local paths, if it has any;
4. the local Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
   `~/.cache/huggingface/hub`), searched with huggingface_hub's cache helpers only.

A path named by the config or an environment variable is authoritative: if it is wrong, that
is reported instead of silently using something else. Nothing is ever downloaded, whatever
`HF_HUB_OFFLINE` says (the cache is only read); when files are missing, ONE
`MissingWeightsError` lists every missing item with every place it was looked for and how
to get it.

Adding a model: append a `WeightSpec` to `WEIGHT_SPECS` (see the two teacher entries).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from bench.errors import BenchError

# ModelScope's diffusers folder: files that must all be present (each entry: any one of).
# Mirrors what t2v_turbo_core.teachers.load_modelscope reads.
_MS_WEIGHT_NAMES = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"),
    "text_encoder": ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"),
}
MODELSCOPE_REQUIRED_FILES: tuple[tuple[str, ...], ...] = (
    ("unet/config.json",),
    tuple(f"unet/{n}" for n in _MS_WEIGHT_NAMES["unet"]),
    ("vae/config.json",),
    tuple(f"vae/{n}" for n in _MS_WEIGHT_NAMES["vae"]),
    ("text_encoder/config.json",),
    tuple(f"text_encoder/{n}" for n in _MS_WEIGHT_NAMES["text_encoder"]),
    # vocab.json + merges.txt (the official repo), or a tokenizer.json instead of both.
    ("tokenizer/vocab.json", "tokenizer/tokenizer.json"),
    ("tokenizer/merges.txt", "tokenizer/tokenizer.json"),
    ("scheduler/scheduler_config.json",),
)


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file (`kind="file"`) or folder (`kind="dir"`) and where to look for it.

    `required`: for a folder, the files (relative paths) it must contain; each entry is a tuple
    of alternatives, any one of which will do. The first entry's first file is also the file
    looked up in the Hugging Face cache for a folder (the folder is that file's snapshot root).
    `hf_filename`: for a file, its name inside the Hugging Face repos `hf_repos`.
    """

    description: str
    kind: str = "file"
    env: tuple[str, ...] = ()
    default_paths: tuple[str, ...] = ()
    hf_repos: tuple[str, ...] = ()
    hf_filename: str | None = None
    hf_revision: str | None = None
    required: tuple[tuple[str, ...], ...] = ()
    hint: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("file", "dir"):
            raise ValueError(f"WeightSpec.kind must be 'file' or 'dir', got {self.kind!r}")
        if self.kind == "file" and self.required:
            raise ValueError("WeightSpec.required only applies to kind='dir'")
        if self.hf_repos and self.kind == "file" and not self.hf_filename:
            raise ValueError("a file spec with hf_repos needs hf_filename")
        if self.hf_repos and self.kind == "dir" and not self.required:
            raise ValueError("a folder spec with hf_repos needs `required` (its first file locates the snapshot)")


WEIGHT_SPECS: dict[str, WeightSpec] = {
    "modelscope_t2v": WeightSpec(
        description="ModelScopeT2V teacher (text-to-video-ms-1.7b, diffusers folder)",
        kind="dir",
        env=("T2V_MS_DIR",),
        hf_repos=("ali-vilab/text-to-video-ms-1.7b", "damo-vilab/text-to-video-ms-1.7b"),
        required=MODELSCOPE_REQUIRED_FILES,
        hint="huggingface-cli download ali-vilab/text-to-video-ms-1.7b --local-dir DIR, then T2V_MS_DIR=DIR",
    ),
    "videocrafter2": WeightSpec(
        description="VideoCrafter2 teacher (model.ckpt: UNet + VAE + OpenCLIP-H text encoder)",
        kind="file",
        env=("T2V_VC2_CKPT",),
        hf_repos=("VideoCrafter/VideoCrafter2",),
        hf_filename="model.ckpt",
        hint="https://huggingface.co/VideoCrafter/VideoCrafter2/blob/main/model.ckpt, then T2V_VC2_CKPT=/path/model.ckpt",
    ),
}

# Which registry entries each teacher config needs.
TEACHER_WEIGHTS: dict[str, str] = {"ms": "modelscope_t2v", "vc2": "videocrafter2"}


def teacher_requirements(model: str) -> dict[str, WeightSpec]:
    """`{name: spec}` of the pretrained files the teacher `model` ('ms' or 'vc2') needs."""
    if model not in TEACHER_WEIGHTS:
        raise ValueError(f"no real teacher named {model!r}; known: {sorted(TEACHER_WEIGHTS)}")
    name = TEACHER_WEIGHTS[model]
    return {name: WEIGHT_SPECS[name]}


@dataclass
class MissingWeight:
    """One unresolved item: what it is and every place that was searched (with the outcome)."""

    name: str
    spec: WeightSpec
    looked: list[str] = field(default_factory=list)


class MissingWeightsError(BenchError, FileNotFoundError):
    """Pretrained files are missing. `str()` is plain text; rich renders a table (`__rich__`)."""

    def __init__(self, missing: list[MissingWeight]):
        self.missing = missing
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [f"{len(self.missing)} pretrained weight item(s) not found (nothing is downloaded automatically):"]
        for item in self.missing:
            lines.append(f"* {item.name}: {item.spec.description}")
            lines.extend(f"    looked: {where}" for where in item.looked)
            if item.spec.hint:
                lines.append(f"    get it: {item.spec.hint}")
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table

        table = Table(title="Missing pretrained weights (nothing is downloaded automatically)", show_lines=True)
        table.add_column("name", style="bold red")
        table.add_column("what")
        table.add_column("looked for")
        table.add_column("how to get it")
        for item in self.missing:
            table.add_row(item.name, item.spec.description, "\n".join(item.looked), item.spec.hint)
        return table


def hf_hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The hub cache huggingface_hub uses, computed from the environment at call time."""
    env = os.environ if environ is None else environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "huggingface")
    return Path(hf_home).expanduser() / "hub"


def _missing_required(spec: WeightSpec, folder: Path) -> list[str]:
    return [" or ".join(group) for group in spec.required if not any((folder / rel).is_file() for rel in group)]


def _check(spec: WeightSpec, path: Path) -> str | None:
    """None if `path` satisfies the spec, else why not."""
    if spec.kind == "file":
        return None if path.is_file() else "no such file"
    if not path.is_dir():
        return "no such folder"
    missing = _missing_required(spec, path)
    return None if not missing else "folder lacks " + "; ".join(missing)


def _cached_snapshot_candidates(spec: WeightSpec, repo: str, cache_dir: Path) -> Iterable[Path]:
    """Paths in the local HF cache that may hold the spec (file, or folder snapshot root)."""
    from huggingface_hub import try_to_load_from_cache

    rel = spec.hf_filename if spec.kind == "file" else spec.required[0][0]
    assert rel is not None
    hit = try_to_load_from_cache(repo, rel, cache_dir=str(cache_dir), revision=spec.hf_revision)
    if isinstance(hit, str):
        yield _strip(Path(hit), rel, spec)
    if spec.hf_revision is None:
        # Snapshots fetched by commit hash have no refs/main: scan every cached revision.
        yield from _scan_snapshots(spec, repo, cache_dir, rel)


def _strip(path: Path, rel: str, spec: WeightSpec) -> Path:
    if spec.kind == "file":
        return path
    for _ in Path(rel).parts:
        path = path.parent
    return path


def _scan_snapshots(spec: WeightSpec, repo: str, cache_dir: Path, rel: str) -> Iterable[Path]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return
    for cached in info.repos:
        if cached.repo_id != repo or cached.repo_type != "model":
            continue
        for revision in sorted(cached.revisions, key=lambda r: r.last_modified, reverse=True):
            candidate = Path(revision.snapshot_path) / rel
            if candidate.is_file():
                yield _strip(candidate, rel, spec)


def _resolve_one(
    name: str, spec: WeightSpec, explicit: str | os.PathLike | None, env: Mapping[str, str]
) -> tuple[Path | None, MissingWeight]:
    record = MissingWeight(name, spec)
    if explicit is not None:
        path = Path(explicit).expanduser()
        problem = _check(spec, path)
        if problem is None:
            return path, record
        record.looked.append(f"{path} (from the config): {problem}")
        return None, record  # an explicit path is authoritative
    for var in spec.env:
        value = env.get(var)
        if not value:
            record.looked.append(f"${var}: not set")
            continue
        path = Path(value).expanduser()
        problem = _check(spec, path)
        if problem is None:
            return path, record
        record.looked.append(f"${var}={path}: {problem}")
        return None, record  # the environment variable is authoritative too
    for default in spec.default_paths:
        path = Path(default).expanduser()
        problem = _check(spec, path)
        if problem is None:
            return path, record
        record.looked.append(f"{path}: {problem}")
    if spec.hf_repos:
        cache_dir = hf_hub_cache_dir(env)
        rel = spec.hf_filename if spec.kind == "file" else spec.required[0][0]
        for repo in spec.hf_repos:
            reasons = []
            for candidate in _cached_snapshot_candidates(spec, repo, cache_dir):
                problem = _check(spec, candidate)
                if problem is None:
                    return candidate, record
                reasons.append(f"{candidate}: {problem}")
            detail = "; ".join(reasons) if reasons else f"no cached {rel}"
            record.looked.append(f"Hugging Face cache {cache_dir} ({repo}): {detail}")
    return None, record


def resolve_weights(
    required: Mapping[str, WeightSpec | str],
    explicit: Mapping[str, str | os.PathLike | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """`{name: local path}` for every required item, or one `MissingWeightsError` for all gaps.

    `required`: `{name: WeightSpec}`, or `{name: registry key}` to use `WEIGHT_SPECS`.
    `explicit`: paths given by the recipe config, by name (None = not given).
    `environ`: the environment to read (default `os.environ`).
    """
    env = os.environ if environ is None else environ
    explicit = explicit or {}
    unknown = sorted(set(explicit) - set(required))
    if unknown:
        raise ValueError(f"explicit paths given for items that are not required: {unknown}")
    found: dict[str, Path] = {}
    missing: list[MissingWeight] = []
    for name, spec in required.items():
        if isinstance(spec, str):
            if spec not in WEIGHT_SPECS:
                raise KeyError(f"no weight spec named {spec!r} in WEIGHT_SPECS")
            spec = WEIGHT_SPECS[spec]
        path, record = _resolve_one(name, spec, explicit.get(name), env)
        if path is None:
            missing.append(record)
        else:
            found[name] = path
    if missing:
        raise MissingWeightsError(missing)
    return found


# --- Reward models (t2v_turbo_core.reward_models loaders) -------------------------------------
# Defaults: HPSv2's own cache folder (hpsv2 `root_path`, also where T2V-Turbo's reward_fn.py
# reads it), and T2V-Turbo's `model_cache/` convention for the video reward checkpoints.
WEIGHT_SPECS.update(
    {
        "hpsv21": WeightSpec(
            description="HPSv2.1 image-text reward (open_clip ViT-H-14; {'state_dict': ...})",
            kind="file",
            env=("HPS_V21_CKPT",),
            default_paths=("~/.cache/hpsv2/HPS_v2.1_compressed.pt",),
            hf_repos=("xswu/HPSv2",),
            hf_filename="HPS_v2.1_compressed.pt",
            hint="https://huggingface.co/xswu/HPSv2/blob/main/HPS_v2.1_compressed.pt -> ~/.cache/hpsv2/, or HPS_V21_CKPT=/path",
        ),
        "pickscore": WeightSpec(
            description="PickScore_v1 image-text reward (transformers CLIP-H folder: config.json + weights)",
            kind="dir",
            env=("PICKSCORE_DIR",),
            default_paths=("~/.cache/t2v_turbo/PickScore_v1",),
            hf_repos=("yuvalkirstain/PickScore_v1",),
            required=(("config.json",), ("model.safetensors", "pytorch_model.bin")),
            hint="huggingface-cli download yuvalkirstain/PickScore_v1 --local-dir DIR, then PICKSCORE_DIR=DIR",
        ),
        "pickscore_processor": WeightSpec(
            description="PickScore's tokenizer (laion CLIP-ViT-H-14 tokenizer files)",
            kind="dir",
            env=("PICKSCORE_PROCESSOR_DIR",),
            default_paths=("~/.cache/t2v_turbo/CLIP-ViT-H-14-laion2B-s32B-b79K",),
            hf_repos=("laion/CLIP-ViT-H-14-laion2B-s32B-b79K",),
            required=(("tokenizer.json", "vocab.json"), ("tokenizer.json", "merges.txt")),
            hint="huggingface-cli download laion/CLIP-ViT-H-14-laion2B-s32B-b79K tokenizer.json tokenizer_config.json "
            "vocab.json merges.txt special_tokens_map.json --local-dir DIR, then PICKSCORE_PROCESSOR_DIR=DIR",
        ),
        "viclip": WeightSpec(
            description="ViCLIP-L video-text reward (ViClip-InternVid-10M-FLT.pth, {'model': ...})",
            kind="file",
            env=("VICLIP_CKPT",),
            default_paths=("~/.cache/t2v_turbo/ViClip-InternVid-10M-FLT.pth", "model_cache/ViClip-InternVid-10M-FLT.pth"),
            hf_repos=("OpenGVLab/ViCLIP",),
            hf_filename="ViClip-InternVid-10M-FLT.pth",
            hint="https://huggingface.co/OpenGVLab/ViCLIP (ViClip-InternVid-10M-FLT.pth), then VICLIP_CKPT=/path",
        ),
        "internvideo2": WeightSpec(
            description="InternVideo2 Stage-2 1B video-text reward (InternVideo2-stage2_1b-224p-f4.pt, DeepSpeed {'module': ...})",
            kind="file",
            env=("INTERNVIDEO2_CKPT",),
            default_paths=(
                "~/.cache/t2v_turbo/InternVideo2-stage2_1b-224p-f4.pt",
                "model_cache/InternVideo2-stage2_1b-224p-f4.pt",
            ),
            hf_repos=("OpenGVLab/InternVideo2-Stage2_1B-224p-f4", "OpenGVLab/InternVideo2"),
            hf_filename="InternVideo2-stage2_1b-224p-f4.pt",
            hint="https://huggingface.co/OpenGVLab/InternVideo2-Stage2_1B-224p-f4 (gated; accept the licence), "
            "then INTERNVIDEO2_CKPT=/path",
        ),
        "internvideo2_tokenizer": WeightSpec(
            description="BERT-large uncased tokenizer for InternVideo2's text tower (vocab.txt)",
            kind="dir",
            env=("INTERNVIDEO2_TOKENIZER_DIR",),
            default_paths=("~/.cache/t2v_turbo/bert-large-uncased",),
            hf_repos=("google-bert/bert-large-uncased", "bert-large-uncased"),
            required=(("vocab.txt", "tokenizer.json"),),
            hint="huggingface-cli download google-bert/bert-large-uncased vocab.txt tokenizer.json tokenizer_config.json "
            "--local-dir DIR, then INTERNVIDEO2_TOKENIZER_DIR=DIR",
        ),
    }
)

# Which registry entries each reward model needs (names as in t2v_turbo_core.reward_models).
REWARD_WEIGHTS: dict[str, tuple[str, ...]] = {
    "hpsv21": ("hpsv21",),
    "pickscore": ("pickscore", "pickscore_processor"),
    "viclip": ("viclip",),
    "internvideo2": ("internvideo2", "internvideo2_tokenizer"),
}


def reward_requirements(reward: str) -> dict[str, WeightSpec]:
    """`{name: spec}` of the pretrained files the reward model `reward` needs."""
    if reward not in REWARD_WEIGHTS:
        raise ValueError(f"no reward model named {reward!r}; known: {sorted(REWARD_WEIGHTS)}")
    return {name: WEIGHT_SPECS[name] for name in REWARD_WEIGHTS[reward]}
