"""A dimension's result as VBench writes it, published into the output folder; the summary and the submission zip."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

from t2v_turbo_core.safe_io import atomic_write
from bench.scoring.results import ScoreError, read_complete_result, result_path, write_result_json
from bench.vbench import env as vbench_env
from bench.vbench import suite
from bench.vbench.score.inputs import BENCH_DIR


SUMMARY_NAME = "summary.json"


_atomic_write_json = write_result_json


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed_full_info(env: vbench_env.VBenchEnv) -> Path | None:
    """The VBench_full_info.json VBench itself reads (inside the env's vbench package)."""
    found = sorted(env.root.glob("lib/python*/site-packages/vbench/VBench_full_info.json"))
    return found[0] if found else None


def _rewrite_paths(obj, old: str, new: str):
    """Point video paths recorded through the links folder back at the real videos."""
    if isinstance(obj, str):
        return new + obj[len(old) :] if obj.startswith(old) else obj
    if isinstance(obj, list):
        return [_rewrite_paths(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, old, new) for k, v in obj.items()}
    return obj


def publish_dimension(staging: Path, out_dir: Path, dimension: str, view: Path | None, videos_dir: Path) -> float:
    """Validate VBench's files in `staging` and move them into `out_dir` atomically."""
    staged = staging / f"{dimension}_eval_results.json"
    if read_complete_result(staged, dimension) is None:
        raise ScoreError(
            f"VBench finished {dimension} without a usable result in {staged} "
            "(no videos scored, or a nan aggregate); see the log",
            code=1,
        )
    # The eval result last: its presence is what marks the dimension as done.
    for name in (f"{dimension}_full_info.json", f"{dimension}_eval_results.json"):
        src = staging / name
        if not src.exists():
            continue
        if view is not None:
            data = _rewrite_paths(json.loads(src.read_text(encoding="utf-8")), str(view), str(videos_dir))
            _atomic_write_json(out_dir / name, data)
        else:
            os.replace(src, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    aggregate = read_complete_result(result_path(out_dir, dimension), dimension)
    assert aggregate is not None
    return aggregate


def write_summary(out_dir: Path) -> dict[str, float]:
    summary = {}
    for d in suite.ALL_DIMENSIONS:
        value = read_complete_result(result_path(out_dir, d), d)
        if value is not None:
            summary[d] = value
    _atomic_write_json(out_dir / BENCH_DIR / SUMMARY_NAME, summary)
    return summary


def export_zip(out_dir: Path, zip_path: Path) -> list[str]:
    """Pack VBench's result files (no harness files) as a submission zip, atomically."""
    names = sorted(p.name for p in out_dir.glob("*_eval_results.json"))
    if not names:
        raise ScoreError(f"--export-zip: no *_eval_results.json in {out_dir} to pack")

    def pack(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for n in names:
                zf.write(out_dir / n, arcname=n)

    atomic_write(zip_path, pack)
    return names


