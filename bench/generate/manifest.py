"""The output folder's records: manifest.jsonl (one line per finished video, per shard), its repair, the checks that a recorded video is intact, suite_info.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from t2v_turbo_core.safe_io import atomic_write_bytes, atomic_write_json
from bench.vbench import suite as vbench_suite
from bench.generate.sampling import GenerateError
from bench.generate.plan import GENERATION_NAME, SUITE_INFO_NAME, SuiteItem, videos_for


MANIFEST_NAME = "manifest.jsonl"


def manifest_name(shard: tuple[int, int]) -> str:
    k, n = shard
    return MANIFEST_NAME if n == 1 else f"manifest.shard-{k}-of-{n}.jsonl"


def manifest_files(out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(
        p for p in out_dir.iterdir()
        if p.is_file() and (p.name == MANIFEST_NAME or (p.name.startswith("manifest.shard-") and p.name.endswith(".jsonl")))
    )


def read_manifest_records(out_dir: Path) -> list[dict]:
    """Every record of every manifest file in the folder, as written (duplicates kept).

    A torn last line (a process killed mid-append) is skipped: its video has no record and
    is therefore regenerated (`repair_manifest` removes the line itself).
    """
    records = []
    for path in manifest_files(out_dir):
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("file"), str):
                records.append(rec)
    return records


def repair_manifest(path: Path) -> int:
    """Drop every line of `path` that is not a complete JSON record (a write torn by a kill);
    rewritten atomically. Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    kept: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("file"), str):
            kept.append(line)
    new = b"".join(line + b"\n" for line in kept)
    if new != raw:
        atomic_write_bytes(path, new)
    return sum(1 for line in lines if line.strip()) - len(kept)


def read_manifest(out_dir: str | Path) -> dict[str, dict]:
    """{file: record} merged over `manifest.jsonl` and every `manifest.shard-K-of-N.jsonl`.

    A file recorded twice (regenerated after an interrupted run) keeps its latest record.
    """
    merged: dict[str, dict] = {}
    for rec in read_manifest_records(Path(out_dir)):
        merged[rec["file"]] = rec
    return merged


def _append_record(path: Path, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, data: Any) -> None:
    # (the temp name is per process and call: two shards may write the same folder)
    atomic_write_json(path, data, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def recorded_base_seed(out_dir: Path) -> int | None:
    """The base seed the folder's videos were made with (generation.json, else a record)."""
    gen = Path(out_dir) / GENERATION_NAME
    if gen.is_file():
        try:
            seed = json.loads(gen.read_text(encoding="utf-8")).get("seeds", {}).get("base_seed")
            if isinstance(seed, int):
                return seed
        except ValueError:
            pass
    for rec in read_manifest_records(Path(out_dir)):
        if isinstance(rec.get("base_seed"), int):
            return rec["base_seed"]
    return None


def check_out_dir(out_dir: Path) -> None:
    """The output folder can be created or reused, and writing it writes nothing elsewhere.

    Checked before any model loads: an existing file or a dangling symlink where the folder
    should be, a parent that is a file, and a manifest or record file that is a symlink (an
    append would write through it, to wherever it points) are errors naming the path.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() and not out_dir.exists():
        raise GenerateError(f"--out {out_dir} is a dangling symlink (to {os.readlink(out_dir)}); remove it or choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise GenerateError(f"--out {out_dir} is an existing file, not a folder; choose another --out")
    for parent in out_dir.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise GenerateError(f"cannot create {out_dir}: {parent} is a file, not a folder")
            break
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            is_record = p.name in (MANIFEST_NAME, GENERATION_NAME, SUITE_INFO_NAME) or (
                p.name.startswith("manifest.shard-") and p.name.endswith(".jsonl"))
            if is_record and p.is_symlink():
                raise GenerateError(f"{p} is a symlink; bench generate writes its records only to regular files "
                                    "in the output folder (replace it with a copy of what it points to)")


def check_video_file(path: Path, record: dict, num_frames: int) -> str | None:
    """Why a recorded video must be made again (None: it is intact).

    Cheap: the size the record noted at writing time, and the container header's frame count
    (no decoding), which catch a file cut short, emptied or replaced.
    """
    from bench.video_io import VideoReadError, probe_video

    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if isinstance(record.get("bytes"), int) and size != record["bytes"]:
        return f"{size} bytes, {record['bytes']} when written"
    try:
        frames = probe_video(path)
    except VideoReadError as err:
        return str(err)
    if frames != num_frames:
        return f"{frames} frames, expected {num_frames}"
    return None


def suite_info(items: Sequence[SuiteItem], source: dict | None, videos_per_prompt: int, flicker_oversample: bool) -> dict:
    prompts = {}
    for item in items:
        prompts.setdefault(item.prompt, {
            "dimensions": list(item.dimensions),
            "auxiliary_info": item.auxiliary_info,
            "videos": videos_for(item, videos_per_prompt, flicker_oversample),
        })
    rule = vbench_suite.TEMPORAL_FLICKERING_OVERSAMPLING
    return {
        "source": source or {"suite": "custom"},
        "videos_per_prompt": videos_per_prompt,
        "flicker_oversample": (
            {"dimension": rule.dimension, "sampled": rule.n_sampled, "kept": rule.n_kept,
             "filter": rule.filter_command, "filtered_subdir": rule.filtered_subdir}
            if flicker_oversample else None
        ),
        "file_pattern": "{prompt}-{index}.mp4",
        "prompts": prompts,
    }


