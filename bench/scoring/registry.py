"""The benchmarks `bench` scores with: one registry that `score`, `ablate` and `report` share.

Each entry names its `bench score` sub-command (module and function, imported only when the
verb is registered, so `bench --help` stays fast), the prompt suite it scores by default,
and its aggregation table (normalisation, weights, Quality/Semantic grouping:
bench/vbench/constants.py). A results folder records its benchmark in its scoring file;
`bench report` picks the table by that name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from bench.vbench.constants import AGGREGATION_TABLES, AggregationTable


@dataclass(frozen=True)
class Benchmark:
    name: str
    command: str  # "module:function" of its `bench score <name>` command
    suite: str  # the prompt suite its videos are generated from by default
    description: str

    @property
    def table(self) -> AggregationTable:
        return AGGREGATION_TABLES[self.name]

    def load_command(self) -> Callable:
        module, _, func = self.command.partition(":")
        return getattr(importlib.import_module(module), func)


BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType({
    "vbench": Benchmark("vbench", "bench.vbench.score:vbench_command", "vbench",
                        "VBench 0.1.5's 16 dimensions with its pretrained evaluators (a separate env)"),
    "tiny": Benchmark("tiny", "bench.tinyworld.score:tiny_command", "tiny",
                      "the tiny world's 16 dimensions with the zoo's own evaluators"),
})


def names_text(sep: str = " or ") -> str:
    return sep.join(BENCHMARKS)
