"""Planning a generation: the prompt suites, the video plan (names, seeds) and its shards, the output folder's file names."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.vbench import suite as vbench_suite
from bench.generate.sampling import GenerateError


SUITES = ("vbench", "tiny")
SUITE_INFO_NAME = "suite_info.json"
GENERATION_NAME = "generation.json"
DEFAULT_VIDEOS_PER_PROMPT = vbench_suite.VIDEOS_PER_PROMPT


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class SuiteItem:
    """A prompt and what it serves (VBench's PromptEntry and the tiny world's TinyPrompt fit)."""

    prompt: str
    dimensions: tuple[str, ...] = ()
    auxiliary_info: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class PlannedVideo:
    position: int  # index in the full, unsharded plan
    prompt: str
    index: int
    file: str  # relative to the output folder


def as_suite_items(prompts_or_items: Iterable[Any]) -> list[SuiteItem]:
    """Plain strings or suite entries (anything with `.prompt`) -> SuiteItems, order kept."""
    items = []
    for x in prompts_or_items:
        if isinstance(x, str):
            items.append(SuiteItem(x))
        elif hasattr(x, "prompt"):
            items.append(SuiteItem(x.prompt, tuple(getattr(x, "dimensions", ()) or ()), dict(getattr(x, "auxiliary_info", {}) or {})))
        else:
            raise GenerateError(f"not a prompt or suite entry: {x!r}")
    return items


def load_suite(suite: str, dimensions: Sequence[str] | None = None) -> tuple[list[SuiteItem], dict]:
    """(items, source description) of a named suite; reads json only, loads no model."""
    dims = list(dimensions) if dimensions else None
    try:
        if suite == "vbench":
            src = vbench_suite.suite_source()
            entries = vbench_suite.load_vbench_suite(dims)
            return as_suite_items(entries), {"suite": "vbench", "path": str(src.path), "origin": src.origin, "version": src.version}
        if suite == "tiny":
            from bench.tinyworld.suite import tiny_suite

            return as_suite_items(tiny_suite(dims)), {"suite": "tiny", "module": "bench.tinyworld.suite"}
    except ValueError as err:  # unknown dimension names
        raise GenerateError(str(err)) from err
    raise GenerateError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")


def limit_items(items: Sequence[SuiteItem], limit: int) -> list[SuiteItem]:
    """The first `limit` prompts in suite order (suite entries are distinct prompts)."""
    if limit < 1:
        raise GenerateError(f"--limit must be >= 1, got {limit}")
    return list(items[:limit])


def read_prompt_file(path: Path) -> list[SuiteItem]:
    """One prompt per line; blank lines are skipped, every other character is kept."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise GenerateError(f"cannot read prompt file {path}: {err}") from err
    except UnicodeDecodeError as err:
        raise GenerateError(
            f"prompt file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    prompts = list(dict.fromkeys(line for line in lines if line.strip()))
    if not prompts:
        raise GenerateError(f"prompt file {path} holds no prompts")
    return [SuiteItem(p) for p in prompts]


def videos_for(item: SuiteItem, videos_per_prompt: int, flicker_oversample: bool) -> int:
    """VBench's rule: a temporal_flickering prompt is sampled 25 times, then statically filtered."""
    rule = vbench_suite.TEMPORAL_FLICKERING_OVERSAMPLING
    if flicker_oversample and rule.dimension in item.dimensions:
        return max(videos_per_prompt, rule.n_sampled)
    return videos_per_prompt


def plan_videos(
    items: Sequence[SuiteItem],
    videos_per_prompt: int = DEFAULT_VIDEOS_PER_PROMPT,
    flicker_oversample: bool = False,
) -> list[PlannedVideo]:
    """Every video of the suite in one deterministic order; file names checked first.

    Raises GenerateError naming the prompt when `{prompt}-{index}.mp4` cannot be a file name,
    so that a bad prompt list fails before any model is loaded.
    """
    if videos_per_prompt < 1:
        raise GenerateError(f"--videos-per-prompt must be >= 1, got {videos_per_prompt}")
    seen: set[str] = set()
    plan: list[PlannedVideo] = []
    for item in items:
        if item.prompt in seen:
            # VBench looks videos up by prompt string: one set of videos per distinct prompt.
            continue
        seen.add(item.prompt)
        n = videos_for(item, videos_per_prompt, flicker_oversample)
        try:
            names = vbench_suite.standard_video_filenames(item.prompt, n)
        except ValueError as err:
            raise GenerateError(str(err)) from err
        for i, name in enumerate(names):
            plan.append(PlannedVideo(len(plan), item.prompt, i, name))
    return plan


def shard_plan(plan: Sequence[PlannedVideo], shard: tuple[int, int]) -> list[PlannedVideo]:
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise GenerateError(f"bad shard {k} of {n}: need 0 <= index < count")
    return [v for v in plan if v.position % n == k]


def video_seed(base_seed: int, prompt: str, index: int) -> int:
    """The seed of video `index` of `prompt`; independent of batch, shard and order."""
    digest = hashlib.sha256(f"{base_seed}|{prompt}|{index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def draw_base_seed() -> int:
    return int.from_bytes(os.urandom(4), "big")


