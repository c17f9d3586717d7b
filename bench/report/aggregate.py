"""The aggregation of `bench report`: VBench's normalisation, weighted means and
Quality / Semantic / Total (Vchitect/VBench scripts/cal_final_score.py), as pure functions,
and one model's results as a value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from bench.errors import BenchError
from bench.vbench.constants import (
    AGGREGATION_TABLES,
    VBENCH_DIMENSIONS,
    AggregationTable,
)

if TYPE_CHECKING:  # pandas and matplotlib are imported where used, to keep `bench --help` fast
    pass


RESULT_GLOB = "*_eval_results.json"  # VBench writes one `{name}_eval_results.json` per evaluate call
SCORING_FILE = "bench_scoring.json"  # docs/conventions.md: says which benchmark produced the folder
DEFAULT_BENCHMARK = "vbench"  # docs/conventions.md: a folder without SCORING_FILE is VBench's
COMPOSITE_COLUMNS = ("total_score", "quality_score", "semantic_score")
REPORT_COLUMNS = ("model", *COMPOSITE_COLUMNS, *VBENCH_DIMENSIONS)
MISSING_MARK = "—"  # how the markdown shows an empty cell (an incomplete composite, a missing dim)


class ReportInputError(BenchError, ValueError):
    """A result file or folder that cannot be reported; `path` names it (exit 2)."""

    note = "nothing was written."

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class ModelResults:
    """One model's VBench results, gathered from one results folder.

    `dimensions` holds each dimension's aggregate as VBench stores it (a fraction);
    `per_video` the per-video list VBench stores beside it; `benchmark` is "vbench" or "tiny".
    """

    name: str
    dimensions: Mapping[str, float]
    per_video: Mapping[str, list[Any]]
    benchmark: str
    source_files: tuple[Path, ...]
    folder: Path
    # Protocol caveats `bench score vbench` recorded (.bench/scoring.json), e.g. an
    # unfiltered temporal_flickering; shown under the table.
    notes: tuple[str, ...] = ()

    @property
    def missing_dimensions(self) -> tuple[str, ...]:
        table = aggregation_table(self.benchmark)
        return tuple(d for d in table.dimensions if d not in self.dimensions)

    def composite_scores(self) -> dict[str, float] | None:
        return composite_scores(self.dimensions, self.benchmark)


# --------------------------------------------------------------------------------------
# Aggregation (pure functions)


def aggregation_table(benchmark: str) -> AggregationTable:
    """The constant table of `benchmark` ("vbench" or "tiny")."""
    try:
        return AGGREGATION_TABLES[benchmark]
    except KeyError:
        known = ", ".join(sorted(AGGREGATION_TABLES))
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {known})") from None


def normalize(raw: float, minimum: float, maximum: float) -> float:
    """VBench's min-max normalisation, `(raw - min) / (max - min)`, not clipped.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_nomalized_score`.
    """
    return (raw - minimum) / (maximum - minimum)


def weighted_mean(values: Mapping[str, float], weights: Mapping[str, float], dims: Sequence[str]) -> float:
    """`sum_d w_d * v_d / sum_d w_d` over `dims`.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_quality_score` and
    `get_semantic_score` (the weight is applied to each normalised value, then the sum is
    divided by the sum of the group's weights).
    """
    return sum(weights[d] * values[d] for d in dims) / sum(weights[d] for d in dims)


def total_score(quality: float, semantic: float, table: AggregationTable) -> float:
    """`(4 * Quality + 1 * Semantic) / (4 + 1)` for VBench.

    Source: Vchitect/VBench scripts/cal_final_score.py, `get_final_score`, with
    QUALITY_WEIGHT = 4 and SEMANTIC_WEIGHT = 1 from scripts/constant.py.
    """
    return (table.quality_weight * quality + table.semantic_weight * semantic) / (
        table.quality_weight + table.semantic_weight
    )


def normalized_dimensions(dim_values: Mapping[str, float], table: AggregationTable) -> dict[str, float]:
    """Every dimension present in `dim_values`, normalised with `table`'s (min, max)."""
    return {d: normalize(v, *table.normalization[d]) for d, v in dim_values.items()}


def composite_scores(dim_values: Mapping[str, float], benchmark: str = DEFAULT_BENCHMARK) -> dict[str, float] | None:
    """Total, Quality and Semantic of one model as fractions (x100 for tables), or None.

    `dim_values` maps dimension names (VBench's result-file spelling, e.g.
    "subject_consistency") to raw aggregates as fractions. Returns None when any of the 16
    dimensions is missing: a missing dimension is never counted as 0 (VBench's script
    would fill it with 0; a report that did so would understate the model silently).

    Source: Vchitect/VBench scripts/cal_final_score.py with scripts/constant.py
    (see `bench.vbench.constants` for the tables).
    """
    table = aggregation_table(benchmark)
    unknown = sorted(set(dim_values) - set(table.dimensions))
    if unknown:
        raise ValueError(f"unknown dimension(s) for benchmark {benchmark!r}: {', '.join(unknown)}")
    if any(d not in dim_values for d in table.dimensions):
        return None
    normalized = normalized_dimensions(dim_values, table)
    quality = weighted_mean(normalized, table.weights, table.quality_dimensions)
    semantic = weighted_mean(normalized, table.weights, table.semantic_dimensions)
    return {
        "total_score": total_score(quality, semantic, table),
        "quality_score": quality,
        "semantic_score": semantic,
    }
