"""The ablation's statistics: paired bootstrap intervals of the composites, and the speed rows."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from bench.ablate.spec import TEACHER


def prompt_of(video_path: str) -> str:
    """`{prompt}-{index}.mp4` -> prompt (VBench's naming; prompts may contain '-')."""
    from bench.report.statistics import video_name_parts

    return video_name_parts(video_path)[0]


def bootstrap_composites(models: Sequence[Any], n: int, seed: int, reference: str,
                         seeds: Mapping[str, Sequence[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Paired, stratified bootstrap over prompts (`bench.report.statistics.bootstrap`).

    Dimensions are resampled over their own prompt lists (dimensions that share a list share
    the draw), with the same draws for every model, so that differences between models are
    paired as the videos are (same prompts, same seeds). `seeds` (name -> one result per
    training seed) makes it two-level. Returns, per model, the percentile 95% intervals of
    Total / Quality / Semantic and of their differences to `reference`.
    """
    from bench.report.statistics import COMPOSITES, bootstrap, build_design, percentile_interval

    design = build_design(seeds or {m.name: [m] for m in models})
    samples = bootstrap(design, n, seed)
    out: dict[str, dict[str, Any]] = {}
    for name in design.names:
        res: dict[str, Any] = {}
        for k in COMPOSITES:
            arr = samples[name].get(k)
            res[k] = None if arr is None else percentile_interval(arr)
            if reference in samples and name != reference:
                ref = samples[reference].get(k)
                res[f"delta_{k}"] = None if arr is None or ref is None else percentile_interval(np.asarray(arr) - np.asarray(ref))
        out[name] = res
    return out


def speed_rows(entries: Sequence[dict]) -> list[dict]:
    """NFE and seconds per video from each model's generation manifest."""
    from bench.generate import read_manifest

    rows = []
    for e in entries:
        records = list(read_manifest(e["videos"]).values())
        secs = [float(r["seconds"]) for r in records if r.get("seconds") is not None]
        sampling = [float(r["sampling_seconds"]) for r in records if r.get("sampling_seconds") is not None]
        rows.append({"model": e["name"], "steps": records[0]["steps"] if records else None,
                     "nfe": records[0]["nfe"] if records else None,
                     "sampling_seconds_per_video": float(np.mean(sampling)) if sampling else math.nan,
                     "seconds_per_video": float(np.mean(secs)) if secs else math.nan})
    teacher = next((r for r in rows if r["model"] == TEACHER), None)
    for r in rows:
        for key, out in (("sampling_seconds_per_video", "speedup_vs_teacher"), ("seconds_per_video", "end_to_end_speedup_vs_teacher")):
            r[out] = teacher[key] / r[key] if teacher and r[key] > 0 else math.nan
        # The NFE limit: the speedup if a network evaluation cost the same in both models and
        # nothing else took time (teacher NFE / model NFE; CFG counts 2 NFE per step).
        r["nfe_limit"] = teacher["nfe"] / r["nfe"] if teacher and teacher["nfe"] and r["nfe"] else math.nan
        for out in ("speedup_vs_teacher", "end_to_end_speedup_vs_teacher"):
            r[out.replace("speedup_vs_teacher", "fraction_of_nfe_limit")] = r[out] / r["nfe_limit"] if r["nfe_limit"] > 0 else math.nan
    return rows
