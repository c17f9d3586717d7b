"""The statistics of a comparison of models on one benchmark (library part; never prints).

Every number here is computed from the per-video values that the benchmark wrote, paired
across models by prompt (and, for the variance decomposition, by video index: `bench
generate` gives video i of a prompt the same seed in every model).

* `bootstrap`: the paired, stratified bootstrap over prompts (each dimension resampled over
  its own prompt list, dimensions sharing a list sharing the draw, the same draws for every
  model). With several training seeds per model it is two-level: seeds are resampled first
  (per model, from their own random stream), then prompts. With identical seeds it returns
  the one-level result (to float rounding).
* `pairwise`: every pair of models, the paired difference with its bootstrap interval, a
  paired permutation test over prompts (scipy.stats.permutation_test, the two models' values
  of a prompt swapped as one unit across all its dimensions) and Holm's correction across
  the pairs of each metric (statsmodels).
* `variance_components` / `detectable_effects`: the Total difference of two models is linear
  in the dimension means, so its variance splits into a between-prompt part, a within-prompt
  (between-video) part and a between-training-seed part; from those, the smallest Total
  difference the design detects with 80% power, and what a target effect needs.
* `held_out_composites`: Total / Quality / Semantic without some dimensions (the leakage
  audit's held-out Total), each group's weights renormalised over what is left.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

COMPOSITES = ("total_score", "quality_score", "semantic_score")
Z_95 = 1.959963984540054  # two-sided 5% test
POWER = 0.80


def video_name_parts(video_path: str) -> tuple[str, int]:
    """`{prompt}-{index}.mp4` -> (prompt, index) (VBench's naming; prompts may contain '-')."""
    stem = Path(video_path).name
    stem = stem[: -len(".mp4")] if stem.endswith(".mp4") else stem
    prompt, _, index = stem.rpartition("-")
    if not index.isdigit() or not prompt:
        raise ValueError(f"not a VBench video name: {video_path}")
    return prompt, int(index)


def per_video_values(model: Any) -> dict[str, dict[str, dict[int, float]]]:
    """dimension -> prompt -> video index -> value, for one model's results (ModelResults).

    Non-numeric or non-finite per-video entries are left out (VBench writes some dimensions'
    per-video results as booleans, which count as 0/1).
    """
    out: dict[str, dict[str, dict[int, float]]] = {}
    for dim, videos in model.per_video.items():
        table: dict[str, dict[int, float]] = {}
        for v in videos:
            value = v.get("video_results") if isinstance(v, Mapping) else None
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                continue
            prompt, index = video_name_parts(str(v["video_path"]))
            table.setdefault(prompt, {})[index] = float(value)
        out[dim] = table
    return out


def per_prompt_values(model: Any) -> dict[str, dict[str, float]]:
    """dimension -> prompt -> mean per-video value (the unit the bootstrap resamples)."""
    return {d: {p: float(np.mean(list(v.values()))) for p, v in t.items()} for d, t in per_video_values(model).items()}


# --------------------------------------------------------------------------------------
# Composite scores over arrays and over a subset of dimensions


def composites(values: Mapping[str, Any], benchmark: str, exclude: Iterable[str] = ()) -> dict[str, Any] | None:
    """Total / Quality / Semantic of `values` (dimension -> raw value or array of values).

    With `exclude` empty this is `bench.report.composite_scores` (it works on arrays as on
    floats); otherwise the excluded dimensions are dropped and each group's weights are
    renormalised over the dimensions left (a group left empty makes the result None).
    """
    from bench.report import aggregation_table, composite_scores, normalize, total_score, weighted_mean

    exclude = set(exclude)
    if not exclude:
        return composite_scores(values, benchmark)
    table = aggregation_table(benchmark)
    if any(d not in values for d in table.dimensions if d not in exclude):
        return None
    quality_dims = [d for d in table.quality_dimensions if d not in exclude]
    semantic_dims = [d for d in table.semantic_dimensions if d not in exclude]
    if not quality_dims or not semantic_dims:
        return None
    normalized = {d: normalize(values[d], *table.normalization[d]) for d in quality_dims + semantic_dims}
    quality = weighted_mean(normalized, table.weights, quality_dims)
    semantic = weighted_mean(normalized, table.weights, semantic_dims)
    return {"total_score": total_score(quality, semantic, table), "quality_score": quality, "semantic_score": semantic}


def total_coefficients(benchmark: str, exclude: Iterable[str] = ()) -> dict[str, float]:
    """Total = const + sum_d c_d * raw_d: the c_d (the aggregation is linear in the raw values)."""
    from bench.report import aggregation_table

    dims = [d for d in aggregation_table(benchmark).dimensions if d not in set(exclude)]
    base = composites({d: 0.0 for d in dims}, benchmark, exclude)
    if base is None:
        return {}
    out = {}
    for d in dims:
        unit = composites({e: float(e == d) for e in dims}, benchmark, exclude)
        out[d] = float(unit["total_score"] - base["total_score"])
    return out


# --------------------------------------------------------------------------------------
# The paired design


@dataclass
class Design:
    """Models x training seeds x dimensions x prompts.

    A dimension's value is VBench's aggregate: the mean over every scored video, so over its
    prompts it is a ratio, sum of values / number of videos (a dimension such as color scores
    only the videos where the object is found, so prompts differ in their counts). Prompts
    are the union over models; a prompt a model has no scored video of counts 0 for it.

    `groups` maps each prompt list (a tuple of prompts) to the dimensions scored on it;
    `sums[model][g]` / `counts[model][g]` are arrays [seeds, dims of g, prompts of g];
    `videos[model][seed][dim][prompt]` the per-video values (index -> value).
    """

    names: list[str]
    benchmark: str
    groups: dict[tuple[str, ...], list[str]]
    sums: dict[str, dict[tuple[str, ...], np.ndarray]]
    counts: dict[str, dict[tuple[str, ...], np.ndarray]]
    videos: dict[str, list[dict[str, dict[str, dict[int, float]]]]] = field(default_factory=dict)

    @property
    def dimensions(self) -> list[str]:
        return [d for dims in self.groups.values() for d in dims]

    def seeds(self, name: str) -> int:
        return len(self.videos[name])

    def seed_dimensions(self, name: str, seed: int) -> dict[str, float]:
        """One training seed's dimension values on the full data."""
        out = {}
        for g, ds in self.groups.items():
            total, count = self.sums[name][g][seed].sum(axis=-1), self.counts[name][g][seed].sum(axis=-1)
            for i, d in enumerate(ds):
                out[d] = float(total[i] / count[i]) if count[i] > 0 else math.nan
        return out

    def point(self, name: str, exclude: Iterable[str] = ()) -> dict[str, float]:
        """Composites and dimension values of the full data (the mean over seeds)."""
        per_seed = [self.seed_dimensions(name, s) for s in range(self.seeds(name))]
        dims = {d: float(np.mean([p[d] for p in per_seed])) for d in self.dimensions}
        comp = composites(dims, self.benchmark, exclude) or {}
        return {**{k: float(v) for k, v in comp.items()}, **dims}


def build_design(models: Mapping[str, Sequence[Any]]) -> Design:
    """`models`: name -> that model's results, one ModelResults per training seed."""
    if not models:
        raise ValueError("no models to compare")
    benchmarks = {r.benchmark for runs in models.values() for r in runs}
    if len(benchmarks) != 1:
        raise ValueError(f"models scored on different benchmarks ({', '.join(sorted(benchmarks))}) cannot be paired")
    videos = {name: [per_video_values(r) for r in runs] for name, runs in models.items()}
    tables = [t for runs in videos.values() for t in runs]
    from bench.report import aggregation_table

    order = aggregation_table(next(iter(benchmarks))).dimensions
    common = set.intersection(*(set(t) for t in tables))
    # Sorted like the one-level bootstrap always was, so that its random draws are unchanged.
    dims = sorted(d for d in common if d in order)
    groups: dict[tuple[str, ...], list[str]] = {}
    for d in dims:
        prompts = tuple(sorted(set.union(*(set(t[d]) for t in tables))))
        if prompts:
            groups.setdefault(prompts, []).append(d)

    def table(name, fn):
        return {g: np.array([[[fn(seed[d].get(p, {})) for p in g] for d in ds] for seed in videos[name]], dtype=float)
                for g, ds in groups.items()}

    sums = {name: table(name, lambda v: float(sum(v.values()))) for name in models}
    counts = {name: table(name, lambda v: float(len(v))) for name in models}
    return Design(names=list(models), benchmark=next(iter(benchmarks)), groups=groups, sums=sums, counts=counts,
                  videos=videos)


def _ratio(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def bootstrap(design: Design, n: int, seed: int, exclude: Iterable[str] = ()) -> dict[str, dict[str, np.ndarray]]:
    """name -> metric (composites and each dimension) -> `n` bootstrap values (fractions).

    Prompt draws come from `default_rng(seed)`, one `integers(0, P, P)` per prompt list per
    resample, in the order the lists are first met (the order the one-level bootstrap of
    earlier releases used, so its intervals are reproduced wherever every prompt has the same
    number of videos). Seed draws, when a model has several, come from a second stream, so
    they never shift the prompt draws.
    """
    rng = np.random.default_rng(seed)
    groups = list(design.groups)
    draws = {g: np.empty((n, len(g)), dtype=np.int64) for g in groups}
    for r in range(n):
        for g in groups:
            draws[g][r] = rng.integers(0, len(g), len(g))
    seed_rng = np.random.default_rng([seed, 1])
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in design.names:
        s = design.seeds(name)
        pick = seed_rng.integers(0, s, (n, s)) if s > 1 else np.zeros((n, 1), dtype=np.int64)
        dims: dict[str, np.ndarray] = {}
        for g in groups:
            values = _ratio(design.sums[name][g][:, :, draws[g]].sum(axis=-1),
                            design.counts[name][g][:, :, draws[g]].sum(axis=-1))  # [seeds, dims, n]
            for i, d in enumerate(design.groups[g]):
                dims[d] = values[pick, i, np.arange(n)[:, None]].mean(axis=1) if s > 1 else values[0, i]
        comp = composites(dims, design.benchmark, exclude) or {}
        out[name] = {**comp, **dims}
    return out


def percentile_interval(samples: np.ndarray, scale: float = 100.0) -> tuple[float, float] | None:
    arr = scale * np.asarray(samples, dtype=float)
    if not np.isfinite(arr).any():
        return None
    return float(np.nanpercentile(arr, 2.5)), float(np.nanpercentile(arr, 97.5))


# --------------------------------------------------------------------------------------
# All pairs


def _stacked_prompt_table(design: Design, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(prompts, sums, counts): [prompts, dims] seed-averaged; 0 where a dimension does not
    use a prompt."""
    prompts = sorted({p for g in design.groups for p in g})
    index = {p: i for i, p in enumerate(prompts)}
    dims = design.dimensions
    sums, counts = np.zeros((len(prompts), len(dims))), np.zeros((len(prompts), len(dims)))
    col = 0
    for g, ds in design.groups.items():
        rows = [index[p] for p in g]
        sums[rows, col:col + len(ds)] = design.sums[name][g].mean(axis=0).T
        counts[rows, col:col + len(ds)] = design.counts[name][g].mean(axis=0).T
        col += len(ds)
    return prompts, sums, counts


def permutation_pvalues(design: Design, a: str, b: str, metrics: Sequence[str], n: int, seed: int,
                        exclude: Iterable[str] = ()) -> dict[str, float]:
    """Two-sided p-values of `a - b` for each metric, by a paired permutation test over prompts.

    Under the null the two models are exchangeable: a prompt's values (all its dimensions)
    are swapped between `a` and `b` as one unit, which scipy's `permutation_type="samples"`
    does on the prompt indices passed as the two samples.
    """
    from scipy.stats import permutation_test

    exclude = tuple(exclude)
    _, sa, ca = _stacked_prompt_table(design, a)
    _, sb, cb = _stacked_prompt_table(design, b)
    sums, counts = np.concatenate([sa, sb]), np.concatenate([ca, cb])  # rows 0..P-1: a, P..2P-1: b
    p_count = sa.shape[0]
    dims = design.dimensions
    out = {}
    for metric in metrics:
        def statistic(x, y, axis=-1, metric=metric):
            x = np.moveaxis(np.asarray(x), axis, -1)
            y = np.moveaxis(np.asarray(y), axis, -1)
            mx = _ratio(sums[x].sum(axis=-2), counts[x].sum(axis=-2))  # [..., dims]
            my = _ratio(sums[y].sum(axis=-2), counts[y].sum(axis=-2))
            if metric in dims:
                j = dims.index(metric)
                return mx[..., j] - my[..., j]
            cx = composites({d: mx[..., j] for j, d in enumerate(dims)}, design.benchmark, exclude)
            cy = composites({d: my[..., j] for j, d in enumerate(dims)}, design.benchmark, exclude)
            if cx is None or cy is None:
                return np.full(mx.shape[:-1], np.nan)
            return cx[metric] - cy[metric]

        idx = (np.arange(p_count), np.arange(p_count) + p_count)
        observed = statistic(*idx)
        if not np.isfinite(observed):
            continue
        if np.array_equal(sa, sb) and np.array_equal(ca, cb):
            out[metric] = 1.0
            continue
        res = permutation_test(idx, statistic, permutation_type="samples", vectorized=True, n_resamples=n,
                               alternative="two-sided", random_state=np.random.default_rng([seed, 2]))
        out[metric] = float(res.pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels' `multipletests(method="holm")`)."""
    from statsmodels.stats.multitest import multipletests

    if not len(pvalues):
        return []
    return [float(p) for p in multipletests(list(pvalues), alpha=0.05, method="holm")[1]]


def pairwise(design: Design, samples: Mapping[str, Mapping[str, np.ndarray]], metrics: Sequence[str],
             permutations: int, seed: int, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One row per (pair, metric): difference (x100), 95% interval, p, Holm-adjusted p.

    Holm's family is all pairs of one metric (so each column of the matrix is corrected for
    the number of pairs it shows).
    """
    exclude = tuple(exclude)
    rows = []
    points = {name: design.point(name, exclude) for name in design.names}
    for a, b in itertools.combinations(design.names, 2):
        ps = permutation_pvalues(design, a, b, metrics, permutations, seed, exclude)
        for metric in metrics:
            if metric not in samples[a] or metric not in samples[b] or metric not in points[a]:
                continue
            diff = np.asarray(samples[a][metric]) - np.asarray(samples[b][metric])
            rows.append({"a": a, "b": b, "metric": metric, "difference": 100 * (points[a][metric] - points[b][metric]),
                         "ci": percentile_interval(diff), "p": ps.get(metric, math.nan)})
    for metric in metrics:
        family = [r for r in rows if r["metric"] == metric and math.isfinite(r["p"])]
        for r, adj in zip(family, holm([r["p"] for r in family])):
            r["p_holm"] = adj
    for r in rows:
        r.setdefault("p_holm", math.nan)
    return rows


# --------------------------------------------------------------------------------------
# Variance components and the minimum detectable effect


@dataclass(frozen=True)
class VarianceComponents:
    """Variance of one Total difference (fractions squared) as `between_prompt / P_g +
    within_prompt / (P_g V)` summed over prompt lists, plus `between_seed / S`."""

    prompt_terms: tuple[tuple[int, float, float], ...]  # per prompt list: (P_g, tau2_g, sigma2_g)
    videos: float  # videos per prompt of the design (mean)
    seeds: int
    between_seed: float | None  # None: one training seed, not estimable

    def variance(self, prompt_factor: float = 1.0, videos: float | None = None, seeds: int | None = None) -> float:
        v = self.videos if videos is None else videos
        s = self.seeds if seeds is None else seeds
        total = sum((tau + sigma / v) / (prompt_factor * p) for p, tau, sigma in self.prompt_terms)
        if self.between_seed is not None:
            total += self.between_seed / s
        return total

    def shares(self) -> dict[str, float]:
        prompts = sum(tau / p for p, tau, _ in self.prompt_terms)
        videos = sum(sigma / (self.videos * p) for p, _, sigma in self.prompt_terms)
        seeds = (self.between_seed or 0.0) / max(self.seeds, 1)
        total = prompts + videos + seeds
        if total <= 0:
            return {"prompts": math.nan, "videos": math.nan, "seeds": math.nan}
        return {"prompts": prompts / total, "videos": videos / total, "seeds": seeds / total}


def variance_components(design: Design, a: str, b: str) -> VarianceComponents:
    """The components of Var(Total_a - Total_b), from per-video values paired by index."""
    coef = total_coefficients(design.benchmark)
    terms = []
    n_videos = []
    for g, dims in design.groups.items():
        prompt_means, within, group_videos = [], [], []
        for p in g:
            per_seed = []
            for seed_a, seed_b in zip(design.videos[a], design.videos[b]):
                # Videos scored for both models in every dimension of the list (paired by index).
                idx = sorted(set.intersection(*(set(seed_a[d].get(p, {})) & set(seed_b[d].get(p, {})) for d in dims)))
                if not idx:
                    continue
                y = np.array([sum(coef[d] * (seed_a[d][p][i] - seed_b[d][p][i]) for d in dims) for i in idx])
                per_seed.append(y)
            if not per_seed:
                continue
            prompt_means.append(float(np.mean(np.concatenate(per_seed))))
            within.append(float(np.mean([s.var(ddof=1) for s in per_seed if len(s) > 1])) if any(len(s) > 1 for s in per_seed) else 0.0)
            group_videos.append(len(per_seed[0]))
        if len(prompt_means) < 2:
            continue
        n_videos += group_videos
        v = float(np.mean(group_videos))
        sigma2 = float(np.mean(within))
        tau2 = max(0.0, float(np.var(prompt_means, ddof=1)) - sigma2 / v)
        terms.append((len(prompt_means), tau2, sigma2))
    seeds = min(design.seeds(a), design.seeds(b))
    between_seed = None
    if seeds > 1:
        totals = {}
        for name in (a, b):
            per_seed = []
            for s in range(design.seeds(name)):
                per_seed.append(composites(design.seed_dimensions(name, s), design.benchmark)["total_score"])
            totals[name] = np.var(per_seed, ddof=1)
        between_seed = float(totals[a] + totals[b])
    return VarianceComponents(tuple(terms), float(np.mean(n_videos)) if n_videos else 1.0, max(seeds, 1), between_seed)


def pooled_components(design: Design, names: Sequence[str] | None = None) -> VarianceComponents:
    """The components averaged over every pair of `names` (default: all models)."""
    names = list(names or design.names)
    comps = [variance_components(design, a, b) for a, b in itertools.combinations(names, 2)]
    if not comps:
        raise ValueError("need at least two models")
    k = len(comps[0].prompt_terms)
    terms = tuple(
        (comps[0].prompt_terms[i][0], float(np.mean([c.prompt_terms[i][1] for c in comps])),
         float(np.mean([c.prompt_terms[i][2] for c in comps])))
        for i in range(k) if all(len(c.prompt_terms) == k for c in comps)
    )
    seeds_known = [c.between_seed for c in comps if c.between_seed is not None]
    return VarianceComponents(terms, comps[0].videos, max(c.seeds for c in comps),
                              float(np.mean(seeds_known)) if seeds_known else None)


def minimum_detectable_effect(comp: VarianceComponents, prompt_factor: float = 1.0, videos: float | None = None,
                              seeds: int | None = None, power: float = POWER) -> float:
    """Smallest true Total difference (x100) a two-sided 5% test detects with `power`."""
    from scipy.stats import norm

    return 100 * (Z_95 + float(norm.ppf(power))) * math.sqrt(comp.variance(prompt_factor, videos, seeds))


def detectable_effects(comp: VarianceComponents, targets: Sequence[float] = (0.5, 1.0, 2.0)) -> dict[str, Any]:
    """The MDE table of a report: the design as run, more videos, more seeds, more prompts;
    and for each target effect (points of Total) what the design needs."""
    grid, seen = [], set()
    for factor, videos, seeds in [(1, None, None), (1, 10, None), (1, 25, None), (2, None, None), (4, None, None),
                                  (1, None, 3), (1, None, 5), (1, 25, 5)]:
        if seeds is not None and comp.between_seed is None:
            continue
        key = (factor, videos or comp.videos, seeds or comp.seeds)
        if key in seen:
            continue
        seen.add(key)
        grid.append({"prompts_x": factor, "videos": key[1], "seeds": key[2],
                     "mde": minimum_detectable_effect(comp, factor, videos, seeds)})
    needs = []
    for target in targets:
        row: dict[str, Any] = {"target": target}
        row["videos"] = next((v for v in (5, 10, 25, 50, 100, 250) if minimum_detectable_effect(comp, 1, v) <= target), None)
        row["prompts_x"] = next((f for f in (1, 2, 4, 8, 16, 32) if minimum_detectable_effect(comp, f) <= target), None)
        if comp.between_seed is not None:
            row["seeds"] = next((s for s in range(1, 21) if minimum_detectable_effect(comp, seeds=s) <= target), None)
        needs.append(row)
    return {"grid": grid, "needs": needs, "shares": comp.shares(),
            "seed_variance_known": comp.between_seed is not None}
