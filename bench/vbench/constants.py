"""The constants that turn VBench's 16 per-dimension values into Total / Quality / Semantic.

Everything here is data; the formulas that use it live in `bench.report`.

Source of the VBench table: Vchitect/VBench, `scripts/constant.py` (`NORMALIZE_DIC`,
`DIM_WEIGHT`, `QUALITY_LIST`, `SEMANTIC_LIST`, `QUALITY_WEIGHT`, `SEMANTIC_WEIGHT`), as used
by `scripts/cal_final_score.py` in the same repository, the script VBench publishes for
computing the leaderboard's aggregate scores. VBench spells dimensions with spaces
("subject consistency"); its result files (`*_eval_results.json`) key them with
underscores, which is the spelling used here.

The tiny synthetic world's benchmark reports the same 16 dimensions, each already a fraction
in [0, 1] where 1 is best (docs/conventions.md), so its table is the identity normalisation
with VBench's weights and grouping.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# The seven "quality" dimensions and nine "semantic" dimensions, in the order of VBench's
# `TASK_INFO` (which is also the column order of the VBench paper and leaderboard).
QUALITY_DIMENSIONS: tuple[str, ...] = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
SEMANTIC_DIMENSIONS: tuple[str, ...] = (
    "object_class",
    "multiple_objects",
    "human_action",
    "color",
    "spatial_relationship",
    "scene",
    "appearance_style",
    "temporal_style",
    "overall_consistency",
)
VBENCH_DIMENSIONS: tuple[str, ...] = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS


@dataclass(frozen=True)
class AggregationTable:
    """How one benchmark turns raw dimension values into composite scores.

    `normalization[d] = (min, max)`: the normalised value is `(raw - min) / (max - min)`.
    `weights[d]`: the dimension's weight inside its group's weighted mean.
    Total = (quality_weight * Quality + semantic_weight * Semantic)
            / (quality_weight + semantic_weight).
    """

    name: str
    source: str
    normalization: Mapping[str, tuple[float, float]]
    weights: Mapping[str, float]
    quality_dimensions: tuple[str, ...]
    semantic_dimensions: tuple[str, ...]
    quality_weight: float
    semantic_weight: float

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.quality_dimensions + self.semantic_dimensions


# Vchitect/VBench scripts/constant.py: NORMALIZE_DIC ("Min", "Max") per dimension.
_VBENCH_MIN_MAX: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}

# Vchitect/VBench scripts/constant.py: DIM_WEIGHT, every dimension 1 except dynamic_degree.
_VBENCH_WEIGHTS: dict[str, float] = {d: 1.0 for d in VBENCH_DIMENSIONS}
_VBENCH_WEIGHTS["dynamic_degree"] = 0.5

VBENCH_TABLE = AggregationTable(
    name="vbench",
    source="Vchitect/VBench scripts/constant.py (aggregated as in scripts/cal_final_score.py)",
    normalization=MappingProxyType(_VBENCH_MIN_MAX),
    weights=MappingProxyType(_VBENCH_WEIGHTS),
    quality_dimensions=QUALITY_DIMENSIONS,
    semantic_dimensions=SEMANTIC_DIMENSIONS,
    # scripts/constant.py: QUALITY_WEIGHT = 4, SEMANTIC_WEIGHT = 1.
    quality_weight=4.0,
    semantic_weight=1.0,
)

# The tiny world's benchmark: identity normalisation (its dimensions are already fractions
# where 1 is best), VBench's weights, grouping and Quality/Semantic weighting.
TINY_TABLE = AggregationTable(
    name="tiny",
    source="identity normalisation; weights and grouping of Vchitect/VBench scripts/constant.py",
    normalization=MappingProxyType({d: (0.0, 1.0) for d in VBENCH_DIMENSIONS}),
    weights=MappingProxyType(dict(_VBENCH_WEIGHTS)),
    quality_dimensions=QUALITY_DIMENSIONS,
    semantic_dimensions=SEMANTIC_DIMENSIONS,
    quality_weight=4.0,
    semantic_weight=1.0,
)

AGGREGATION_TABLES: Mapping[str, AggregationTable] = MappingProxyType(
    {VBENCH_TABLE.name: VBENCH_TABLE, TINY_TABLE.name: TINY_TABLE}
)
