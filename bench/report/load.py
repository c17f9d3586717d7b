"""Reading results folders and run directories into `ModelResults` (strictly: a
file that cannot be read is a ReportInputError naming it)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from bench.vbench.constants import (
    AGGREGATION_TABLES,
    AggregationTable,
)

if TYPE_CHECKING:  # pandas and matplotlib are imported where used, to keep `bench --help` fast
    pass
from bench.report.aggregate import (
    RESULT_GLOB,
    SCORING_FILE,
    DEFAULT_BENCHMARK,
    ReportInputError,
    ModelResults,
    aggregation_table,
)


# --------------------------------------------------------------------------------------
# Reading results


def _read_json(path: Path) -> Any:
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ReportInputError(path, f"cannot read the file ({e})") from None
    except json.JSONDecodeError as e:
        raise ReportInputError(path, f"not valid JSON ({e})") from None


def _read_benchmark(folder: Path) -> str:
    scoring = folder / SCORING_FILE
    if not scoring.exists():
        return DEFAULT_BENCHMARK
    data = _read_json(scoring)
    benchmark = data.get("benchmark") if isinstance(data, dict) else None
    if benchmark not in AGGREGATION_TABLES:
        known = " or ".join(repr(b) for b in sorted(AGGREGATION_TABLES))
        raise ReportInputError(scoring, f'"benchmark" must be {known}, found {benchmark!r}')
    return benchmark


HARNESS_SCORING = Path(".bench") / "scoring.json"  # bench/vbench/score/'s per-dimension record


def _protocol_notes(folder: Path, dimensions: Sequence[str]) -> tuple[str, ...]:
    """What `bench score vbench` recorded about how the folder's dimensions were scored."""
    try:
        data = json.loads((folder / HARNESS_SCORING).read_text(encoding="utf-8"))
        records = data["dimensions"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    if not isinstance(records, dict):
        return ()
    notes = []
    tf = records.get("temporal_flickering")
    if "temporal_flickering" in dimensions and isinstance(tf, dict):
        filt = tf.get("static_filter")
        if isinstance(filt, dict) and filt.get("ran") is False:
            notes.append("temporal_flickering was scored without VBench's static filter "
                         "(not the leaderboard protocol)")
    custom = [d for d in dimensions if isinstance(records.get(d), dict)
              and (records[d].get("inputs") or {}).get("mode") == "custom_input"]
    if custom:
        notes.append(f"{', '.join(custom)}: scored in VBench's custom_input mode (own prompts; "
                     "not comparable with the leaderboard)")
    return tuple(notes)


def _read_result_file(path: Path, table: AggregationTable) -> dict[str, tuple[float, list[Any]]]:
    """One `*_eval_results.json`: {dimension: (aggregate, per-video list)}, validated."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ReportInputError(path, "expected a JSON object {dimension: [aggregate, per_video_list]}")
    out: dict[str, tuple[float, list[Any]]] = {}
    for dim, entry in data.items():
        if dim not in table.dimensions:
            raise ReportInputError(
                path, f"unknown dimension {dim!r} (a {table.name} result has: {', '.join(table.dimensions)})"
            )
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise ReportInputError(path, f"{dim}: expected [aggregate, per_video_list]")
        aggregate = entry[0]
        if isinstance(aggregate, bool) or not isinstance(aggregate, (int, float)):
            raise ReportInputError(path, f"{dim}: aggregate {aggregate!r} is not a number")
        # VBench stores every aggregate as a fraction (per-video imaging_quality values may be
        # 0-100, but those are not checked here).
        if not (math.isfinite(aggregate) and 0.0 <= aggregate <= 1.0):
            raise ReportInputError(path, f"{dim}: aggregate {aggregate!r} is outside [0, 1]")
        out[dim] = (float(aggregate), entry[1])
    return out


def load_results_folder(folder: Path, name: str | None = None) -> ModelResults:
    """One model from one folder of `*_eval_results.json` files (+ optional bench_scoring.json).

    Dimensions may be spread over several files; the same dimension in two files must have
    the same aggregate.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportInputError(folder, "not a directory")
    files = sorted(folder.glob(RESULT_GLOB))
    if not files:
        raise ReportInputError(folder, f"no result files ({RESULT_GLOB}) in this folder")
    benchmark = _read_benchmark(folder)
    table = aggregation_table(benchmark)
    dimensions: dict[str, float] = {}
    per_video: dict[str, list[Any]] = {}
    origin: dict[str, Path] = {}
    for path in files:
        for dim, (aggregate, videos) in _read_result_file(path, table).items():
            if dim in dimensions:
                if dimensions[dim] != aggregate:
                    raise ReportInputError(
                        path,
                        f"{dim} = {aggregate!r} here but {dimensions[dim]!r} in {origin[dim]}; "
                        "remove one of the two results",
                    )
                continue
            dimensions[dim] = aggregate
            per_video[dim] = videos
            origin[dim] = path
    ordered = [d for d in table.dimensions if d in dimensions]
    return ModelResults(
        name=name if name is not None else folder.resolve().name,
        dimensions={d: dimensions[d] for d in ordered},
        per_video={d: per_video[d] for d in ordered},
        benchmark=benchmark,
        source_files=tuple(files),
        folder=folder,
        notes=_protocol_notes(folder, ordered),
    )


def is_run_directory(path: Path) -> bool:
    """A run directory (docs/conventions.md) has `scores/` and no result files of its own."""
    return (path / "scores").is_dir() and not any(path.glob(RESULT_GLOB))


def load_results(path: str | os.PathLike[str]) -> list[ModelResults]:
    """The models found at `path`: a results folder (one model, named after the folder) or
    a run directory `runs/<run>/` (one model per `scores/<label>/`, named `<run>/<label>`,
    or `<run>` when there is only one label).

    Raises ReportInputError (naming the file or folder) on anything that cannot be reported.
    """
    path = Path(path)
    if not path.exists():
        raise ReportInputError(path, "no such file or directory")
    if not path.is_dir():
        raise ReportInputError(path, "expected a results folder or a run directory, not a file")
    if not is_run_directory(path):
        return [load_results_folder(path)]
    scores = path / "scores"
    labels = sorted(p for p in scores.iterdir() if p.is_dir())
    if not labels:
        raise ReportInputError(scores, "no scores/<label>/ folders in this run directory")
    run = path.resolve().name
    if len(labels) == 1:
        return [load_results_folder(labels[0], name=run)]
    return [load_results_folder(label, name=f"{run}/{label.name}") for label in labels]


def load_all(paths: Sequence[str | os.PathLike[str]]) -> list[ModelResults]:
    """`load_results` over several paths; model names must come out unique."""
    models: list[ModelResults] = []
    seen: dict[str, Path] = {}
    for p in paths:
        for model in load_results(p):
            if model.name in seen:
                raise ReportInputError(
                    model.folder,
                    f"model name {model.name!r} is also the name of {seen[model.name]}; "
                    "pass the run directories instead, or rename one folder",
                )
            seen[model.name] = model.folder
            models.append(model)
    return models
