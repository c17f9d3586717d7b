"""`bench score vbench`: score a videos folder with the official `vbench` package.

VBench runs in its own virtualenv (bench/vbench_env.py) through a small driver script
(bench/_vbench_driver.py), one subprocess per dimension. Before anything is installed or
started, every weight file the requested dimensions read is checked
(bench/vbench_weights.py): VBench would otherwise download missing files itself.

Output folder (default `RUN/scores/<label>-vbench/`):
  {dimension}_eval_results.json  VBench's own result file, per-video results included
  {dimension}_full_info.json     VBench's record of which videos it scored
  summary.json                   {dimension: aggregate} for every finished dimension
  bench_scoring.json             what was scored, how, with which versions, when
  vbench.log                     everything VBench printed
A dimension whose result file is complete is skipped on rerun (`--force` redoes it);
result files are staged in `.partial/` and moved into place only once VBench is done.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import vbench_env, vbench_weights
from bench.console import print_error
from bench.suites import vbench as suite

DRIVER = Path(__file__).with_name("_vbench_driver.py")
LOG_NAME = "vbench.log"
STAGING_NAME = ".partial"
VIEW_NAME = ".videos-view"
MISSING_EXIT = 2  # the driver's and our code for "a prerequisite is missing"

err_console = Console(stderr=True)
out_console = Console()


class ScoreError(Exception):
    """A user-facing failure: message plus exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- inputs


def resolve_videos(run: Path | None, label: str | None, videos_dir: Path | None) -> tuple[Path, str]:
    """(videos folder, label) from `--run [--videos]` or `--videos-dir`."""
    if (run is None) == (videos_dir is None):
        raise ScoreError("give exactly one of --run RUN or --videos-dir DIR")
    if videos_dir is not None:
        if label is not None:
            raise ScoreError("--videos LABEL goes with --run; with --videos-dir the folder is the label")
        if not videos_dir.is_dir():
            raise ScoreError(f"videos folder not found: {videos_dir}")
        return videos_dir.resolve(), videos_dir.resolve().name
    root = run / "videos"
    if not root.is_dir():
        raise ScoreError(f"{run} has no videos/ folder (expected {root}/<label>/)")
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if label is None:
        if len(labels) != 1:
            listed = ", ".join(labels) if labels else "none"
            raise ScoreError(f"{root} holds {len(labels)} video sets ({listed}); choose one with --videos LABEL")
        label = labels[0]
    elif label not in labels:
        raise ScoreError(f"no video set '{label}' in {root}; found: {', '.join(labels) or 'none'}")
    return (root / label).resolve(), label


def default_out_dir(videos_dir: Path, label: str) -> Path:
    """`RUN/scores/<label>-vbench/` for a run's videos, else `<videos-dir>-vbench` beside it."""
    if videos_dir.parent.name == "videos":
        return videos_dir.parent.parent / "scores" / f"{label}-vbench"
    return videos_dir.parent / f"{videos_dir.name}-vbench"


def resolve_dimensions(dimensions: list[str] | None) -> list[str]:
    if not dimensions:
        return list(suite.ALL_DIMENSIONS)
    unknown = [d for d in dimensions if d not in suite.ALL_DIMENSIONS]
    if unknown:
        raise ScoreError(
            f"unknown dimension(s): {', '.join(unknown)}\nknown: {', '.join(suite.ALL_DIMENSIONS)}"
        )
    return list(dict.fromkeys(dimensions))


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken torch in the main env must not stop CPU scoring
        return "cpu"


def inventory(videos_dir: Path, dimensions: list[str]) -> dict[str, dict]:
    """{dimension: {expected, found, missing_examples}} using VBench's naming."""
    present = {p.name for p in videos_dir.iterdir()}
    result = {}
    for d in dimensions:
        expected = [n for e in suite.load_vbench_suite([d]) for n in suite.standard_video_filenames(e.prompt)]
        missing = [n for n in expected if n not in present]
        result[d] = {
            "expected": len(expected),
            "found": len(expected) - len(missing),
            "missing_examples": missing[:3],
        }
    return result


def oversampled_unfiltered(videos_dir: Path) -> bool:
    """True if some temporal_flickering prompt has a video past index 4 (25-sample mode)."""
    rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
    return any(
        (videos_dir / f"{e.prompt}-{rule.n_kept}{suite.VIDEO_SUFFIX}").exists()
        for e in suite.load_vbench_suite([rule.dimension])
    )


def videos_view(videos_dir: Path, out_dir: Path) -> Path | None:
    """A folder of links to just the .mp4 files, when `videos_dir` holds anything else.

    VBench's standard mode takes the video suffix from whichever entry `os.listdir` returns
    first; a `manifest.jsonl` (run layout) listed first makes every video look missing.
    """
    entries = list(videos_dir.iterdir())
    if all(p.suffix == suite.VIDEO_SUFFIX and p.is_file() for p in entries):
        return None
    view = out_dir / VIEW_NAME
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for p in entries:
        if p.suffix == suite.VIDEO_SUFFIX and p.is_file():
            (view / p.name).symlink_to(p.resolve())
    return view


# --------------------------------------------------------------------------- results


def _atomic_write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _installed_full_info(env: vbench_env.VBenchEnv) -> Path | None:
    """The VBench_full_info.json VBench itself reads (inside the env's vbench package)."""
    found = sorted(env.root.glob("lib/python*/site-packages/vbench/VBench_full_info.json"))
    return found[0] if found else None


def result_path(out_dir: Path, dimension: str) -> Path:
    return out_dir / f"{dimension}_eval_results.json"


def read_complete_result(path: Path, dimension: str) -> float | None:
    """The aggregate if `path` is a complete VBench result for `dimension`, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        aggregate, per_video = data[dimension]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(per_video, list) or not isinstance(aggregate, (int, float)):
        return None
    if not math.isfinite(aggregate):
        return None
    return float(aggregate)


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
    _atomic_write_json(out_dir / "summary.json", summary)
    return summary


# --------------------------------------------------------------------------- running


@dataclass
class DimensionRun:
    dimension: str
    rc: int
    seconds: float
    missing_line: str | None = None


def run_driver(env: vbench_env.VBenchEnv, *, videos_path: Path, dimension: str, staging: Path,
               device: str, log_path: Path) -> DimensionRun:
    """One VBench evaluate() call in the VBench env; its output appended to the log."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    cmd = [str(env.python), str(DRIVER), "--videos-dir", str(videos_path), "--dimension", dimension,
           "--output-dir", str(staging), "--name", dimension, "--device", device]
    child_env = dict(os.environ)
    child_env.pop("PYTHONPATH", None)
    child_env.update(
        VBENCH_CACHE_DIR=str(vbench_weights.vbench_cache_dir()),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {dimension} on {device}\n$ {' '.join(cmd)}\n")
        log.flush()
        # cwd=staging: anything VBench writes to a relative path stays out of the way.
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=staging)
        log.write(f"===== exit {rc} after {time.time() - started:.1f}s\n")
    missing = None
    if rc == MISSING_EXIT:
        for line in vbench_env.tail(log_path, 200).splitlines():
            if line.startswith("BENCH-VBENCH-MISSING:"):
                missing = line.split(":", 1)[1].strip()
    return DimensionRun(dimension, rc, time.time() - started, missing)


@dataclass
class Scoring:
    """bench_scoring.json, kept up to date while dimensions finish."""

    path: Path
    data: dict = field(default_factory=dict)

    def save(self) -> None:
        _atomic_write_json(self.path, self.data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _install_env_with_progress() -> vbench_env.VBenchEnv:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    env = vbench_env.current_env()
    if env.is_ready():
        return env
    err_console.print(
        f"[bold]Creating the VBench environment[/] at {env.root} (first use only; a few minutes)",
        soft_wrap=True,
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def on_line(line: str) -> None:
            if line.startswith(("[", "VBench env ready", "waiting", "removing")):
                progress.console.print(escape(line), highlight=False, soft_wrap=True)
            elif line.strip():
                progress.update(task, description=line.strip()[:100])

        env = vbench_env.ensure_env(env.root, on_line)
    return env


def score(videos_dir: Path, label: str, out_dir: Path, dimensions: list[str], device: str | None,
          force: bool, command_line: str) -> dict[str, float]:
    """The whole `bench score vbench` flow; raises ScoreError on a user-facing failure."""
    missing = vbench_weights.missing_weights(dimensions)
    if missing:
        raise ScoreError(vbench_weights.format_missing(missing), code=MISSING_EXIT)

    counts = inventory(videos_dir, dimensions)
    empty = [d for d, c in counts.items() if c["found"] == 0]
    if empty:
        examples = "\n".join(f"  {d}: e.g. {counts[d]['missing_examples'][0]!r}" for d in empty)
        raise ScoreError(
            f"no videos in {videos_dir} for {', '.join(empty)}; VBench expects "
            f"{{prompt}}-{{index}}.mp4 for its own prompts:\n{examples}"
        )
    for d, c in counts.items():
        if c["found"] < c["expected"]:
            err_console.print(
                f"[yellow]warning[/]: {d}: {c['found']}/{c['expected']} videos present "
                f"(e.g. missing {escape(repr(c['missing_examples'][0]))}); VBench scores what is there",
                soft_wrap=True,
            )

    if "temporal_flickering" in dimensions and oversampled_unfiltered(videos_dir):
        rule = suite.TEMPORAL_FLICKERING_OVERSAMPLING
        err_console.print(
            f"[yellow]warning[/]: {videos_dir} has temporal_flickering videos numbered past "
            f"{rule.n_kept - 1}: VBench scores only -0..-{rule.n_kept - 1}. For the official protocol run "
            f"`{rule.filter_command}` and score its {rule.filtered_subdir}/ folder with --videos-dir",
            soft_wrap=True,
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_NAME
    done = {} if force else {
        d: v for d in dimensions if (v := read_complete_result(result_path(out_dir, d), d)) is not None
    }
    todo = [d for d in dimensions if d not in done]
    for d in done:
        err_console.print(f"[dim]{d}: already scored ({done[d]:.4f}), skipped[/]", soft_wrap=True)

    if device is None:
        device = default_device()
    elif device.startswith("cuda") and default_device() != "cuda":
        raise ScoreError(f"--device {device}: no CUDA device is visible here; use --device cpu")
    env = _install_env_with_progress() if todo else vbench_env.current_env()
    view = videos_view(videos_dir, out_dir) if todo else None

    scoring = Scoring(out_dir / "bench_scoring.json")
    previous = _read_json(scoring.path) or {}
    full_info = _installed_full_info(env)
    scoring.data = {
        "benchmark": "vbench",
        "videos_dir": str(videos_dir),
        "label": label,
        "dimensions": dimensions,
        "device": device,
        "mode": "vbench_standard",
        "vbench_version": env.versions().get("vbench"),
        "versions": env.versions(),
        "vbench_env": str(env.root),
        "vbench_cache_dir": str(vbench_weights.vbench_cache_dir()),
        "full_info": str(full_info) if full_info else None,
        "full_info_sha256": hashlib.sha256(full_info.read_bytes()).hexdigest() if full_info else None,
        "videos": {d: {k: v for k, v in c.items() if k != "missing_examples"} for d, c in counts.items()},
        "skipped_already_complete": sorted(done),
        # Per-dimension wall time; dimensions finished by an earlier run keep theirs.
        "seconds": {d: t for d, t in (previous.get("seconds") or {}).items() if d in done},
        "command": command_line,
        "started": _now(),
        "finished": None,
        "status": "running",
    }
    scoring.save()

    results = dict(done)
    staging_root = out_dir / STAGING_NAME
    for i, d in enumerate(todo, 1):
        with err_console.status(f"VBench {d} ({i}/{len(todo)}) on {device} ..."):
            run = run_driver(env, videos_path=view or videos_dir, dimension=d,
                             staging=staging_root / d, device=device, log_path=log_path)
        try:
            if run.rc == MISSING_EXIT and run.missing_line:
                raise ScoreError(f"{d}: {run.missing_line}\nlog: {log_path}", code=MISSING_EXIT)
            if run.rc != 0:
                raise ScoreError(
                    f"VBench failed on {d} (exit {run.rc}). Last lines of {log_path}:\n"
                    f"{vbench_env.tail(log_path, 25)}",
                    code=1,
                )
            results[d] = publish_dimension(staging_root / d, out_dir, d, view, videos_dir)
        except ScoreError:
            scoring.data.update(status=f"failed: {d}", finished=_now())
            scoring.save()
            raise
        scoring.data["seconds"][d] = round(run.seconds, 1)
        scoring.save()
        write_summary(out_dir)
        err_console.print(f"[green]✓[/] {d} = {results[d]:.4f}  ({run.seconds:.0f}s)")

    if staging_root.exists() and not any(staging_root.iterdir()):
        staging_root.rmdir()
    if view is not None:
        shutil.rmtree(view, ignore_errors=True)
    summary = write_summary(out_dir)
    scoring.data.update(finished=_now(), status="complete")
    scoring.save()
    return {d: summary[d] for d in dimensions if d in summary}


# --------------------------------------------------------------------------- CLI


def vbench_command(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory; videos in RUN/videos/<label>/."),
    videos: Optional[str] = typer.Option(None, "--videos", help="Video set label under RUN/videos/ (default: the only one)."),
    videos_dir: Optional[Path] = typer.Option(None, "--videos-dir", help="Score this folder of {prompt}-{index}.mp4 directly."),
    dimension: Optional[list[str]] = typer.Option(None, "--dimension", "-d", help="VBench dimension; repeatable (default: all 16)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda if available)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: RUN/scores/<label>-vbench/)."),
    force: bool = typer.Option(False, "--force", help="Recompute dimensions that already have a complete result."),
) -> None:
    """Score videos with the official VBench package (its own env, created on first use)."""
    try:
        vdir, label = resolve_videos(run, videos, videos_dir)
        dims = resolve_dimensions(dimension)
        out_dir = (out or default_out_dir(vdir, label)).resolve()
        summary = score(vdir, label, out_dir, dims, device, force, " ".join(["bench", *sys.argv[1:]]))
    except ScoreError as err:
        print_error(err_console, str(err))
        raise typer.Exit(code=err.code)
    except vbench_env.VBenchEnvError as err:
        print_error(err_console, str(err))
        raise typer.Exit(code=1)
    except KeyboardInterrupt:
        print_error(err_console, "interrupted; rerun the same command to resume (finished dimensions are kept)")
        raise typer.Exit(code=130)

    table = Table(title=f"VBench — {label}", show_header=True)
    table.add_column("dimension")
    table.add_column("score", justify="right")
    for d, v in summary.items():
        table.add_row(d, f"{v:.4f}")
    out_console.print(table)
    out_console.print(f"results: {out_dir}")
