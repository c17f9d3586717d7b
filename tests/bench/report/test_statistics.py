"""bench.report.statistics / bench.report.leakage / bench compare on synthetic results with known truth."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.report import leakage
from bench.report import statistics as st
from bench.ablate import bootstrap_composites
from bench.report import ModelResults, composite_scores
from bench.vbench.constants import VBENCH_DIMENSIONS

DIMS = VBENCH_DIMENSIONS


def _model(name, value_fn, prompts_of, videos=5, benchmark="tiny", seed=0):
    """value_fn(dim, prompt_index, video_index, rng) -> value; prompts_of(dim) -> prompt names."""
    rng = np.random.default_rng(seed)
    per_video, dims = {}, {}
    for d in DIMS:
        vids = [{"video_path": f"/v/{p}-{i}.mp4", "video_results": float(value_fn(d, k, i, rng))}
                for k, p in enumerate(prompts_of(d)) for i in range(videos)]
        per_video[d] = vids
        dims[d] = float(np.mean([v["video_results"] for v in vids]))
    return ModelResults(name=name, dimensions=dims, per_video=per_video, benchmark=benchmark, source_files=(), folder=Path("."))


def _two_lists(d):
    # Two prompt lists, as VBench's dimensions share lists: quality dims one, semantic another.
    n = 12 if d in DIMS[:7] else 9
    tag = "q" if d in DIMS[:7] else "s"
    return [f"{tag} prompt-{k}" for k in range(n)]


def _legacy_bootstrap(models, n, seed, reference):
    """The one-level bootstrap as shipped before bench.report.statistics (loop form), the reference."""
    def per_prompt(model):
        out = {}
        for dim, videos in model.per_video.items():
            groups = {}
            for v in videos:
                stem = Path(v["video_path"]).name[:-4]
                groups.setdefault(stem.rpartition("-")[0], []).append(float(v["video_results"]))
            out[dim] = {p: float(np.mean(vals)) for p, vals in groups.items()}
        return out

    rng = np.random.default_rng(seed)
    tables = {m.name: per_prompt(m) for m in models}
    dims = sorted(set.intersection(*(set(t) for t in tables.values())))
    groups = {}
    for d in dims:
        prompts = sorted(set.intersection(*(set(t[d]) for t in tables.values())))
        groups.setdefault(tuple(prompts), []).append(d)
    samples = {m.name: {"total_score": []} for m in models}
    for _ in range(n):
        draws = {prompts: rng.integers(0, len(prompts), len(prompts)) for prompts in groups if prompts}
        for m in models:
            values = {}
            for prompts, dlist in groups.items():
                picked = [prompts[i] for i in draws[prompts]]
                for d in dlist:
                    values[d] = float(np.mean([tables[m.name][d][p] for p in picked]))
            samples[m.name]["total_score"].append(composite_scores(values, m.benchmark)["total_score"])
    out = {}
    for m in models:
        arr = 100 * np.asarray(samples[m.name]["total_score"])
        out[m.name] = {"total_score": (np.percentile(arr, 2.5), np.percentile(arr, 97.5))}
        if m.name != reference:
            diff = arr - 100 * np.asarray(samples[reference]["total_score"])
            out[m.name]["delta_total_score"] = (np.percentile(diff, 2.5), np.percentile(diff, 97.5))
    return out


def _noisy(shift=0.0, prompt_sd=0.1, video_sd=0.1, prompt_seed=0):
    prompt_effects = np.random.default_rng(prompt_seed).normal(0, prompt_sd, 64)

    def fn(d, k, i, rng):
        return 0.5 + shift + prompt_effects[k] + rng.normal(0, video_sd)
    return fn


def test_one_level_bootstrap_reproduces_the_released_intervals_exactly():
    models = [_model(n, _noisy(s), _two_lists, seed=i) for i, (n, s) in enumerate([("vcm", 0), ("a", 0.03), ("b", -0.02)])]
    new = bootstrap_composites(models, n=200, seed=3, reference="vcm")
    old = _legacy_bootstrap(models, n=200, seed=3, reference="vcm")
    for name in old:
        for key, (lo, hi) in old[name].items():
            assert new[name][key] == pytest.approx((lo, hi), abs=1e-9), (name, key)


def test_two_level_bootstrap_equals_one_level_when_seeds_agree():
    models = [_model(n, _noisy(s), _two_lists, seed=i) for i, (n, s) in enumerate([("vcm", 0), ("a", 0.03)])]
    one = bootstrap_composites(models, n=150, seed=1, reference="vcm")
    two = bootstrap_composites(models, n=150, seed=1, reference="vcm", seeds={m.name: [m, m, m] for m in models})
    assert two.keys() == one.keys()
    for name in one:  # equal to float rounding (a mean over three equal seeds)
        for key, ci in one[name].items():
            assert two[name][key] == pytest.approx(ci, abs=1e-9), (name, key)
    # With seeds that differ, the between-seed spread widens the interval.
    spread = {m.name: [_model(m.name, _noisy(s0 + 0.04 * k), _two_lists, seed=10 + k) for k in range(3)]
              for m, s0 in zip(models, (0, 0.03))}
    wide = bootstrap_composites(models, n=150, seed=1, reference="vcm", seeds=spread)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(wide["a"]["delta_total_score"]) > width(one["a"]["delta_total_score"])


def test_point_values_are_vbenchs_aggregates_when_prompts_have_different_video_counts():
    # As color does: only some videos of a prompt are scored, and one model misses a prompt.
    a = _model("a", _noisy(0.0), _two_lists, seed=1)
    b = _model("b", _noisy(0.05), _two_lists, seed=2)
    for m, drop in ((a, {"/v/s prompt-0-1.mp4", "/v/s prompt-0-2.mp4", "/v/s prompt-3-0.mp4"}),
                    (b, {f"/v/s prompt-5-{i}.mp4" for i in range(5)})):
        m.per_video["color"][:] = [v for v in m.per_video["color"] if v["video_path"] not in drop]
        m.dimensions["color"] = float(np.mean([v["video_results"] for v in m.per_video["color"]]))
    design = st.build_design({"a": [a], "b": [b]})
    for m in (a, b):
        point = design.point(m.name)
        assert point["color"] == pytest.approx(m.dimensions["color"], abs=1e-12)
        assert point["total_score"] == pytest.approx(m.composite_scores()["total_score"], abs=1e-12)
    s = st.bootstrap(design, 200, seed=0)
    assert np.isfinite(s["a"]["total_score"]).all() and np.isfinite(s["b"]["total_score"]).all()


def test_paired_interval_covers_the_true_difference_about_95_percent():
    # Known truth: every raw value of b is a's + 0.02 plus independent video noise, so the
    # true Total difference is the Total's linear coefficients times 0.02.
    coef = st.total_coefficients("tiny")
    true_delta = 100 * 0.02 * sum(coef.values())
    covered, reps = 0, 120
    for r in range(reps):
        a = _model("a", _noisy(0.0, prompt_seed=r), _two_lists, seed=2 * r)
        b = _model("b", _noisy(0.02, prompt_seed=r), _two_lists, seed=2 * r + 1)
        design = st.build_design({"a": [a], "b": [b]})
        s = st.bootstrap(design, 300, seed=r)
        lo, hi = st.percentile_interval(np.asarray(s["b"]["total_score"]) - np.asarray(s["a"]["total_score"]))
        covered += lo <= true_delta <= hi
    # 95% nominal; the percentile bootstrap over 9-12 prompts is a little narrow: 0.85-0.99.
    assert 0.85 <= covered / reps <= 0.99, covered / reps


def test_holm_matches_a_hand_computed_case():
    # Sorted 0.01, 0.02, 0.03, 0.04 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.06.
    assert st.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_permutation_pvalues_identical_clear_and_noise():
    a = _model("a", _noisy(0.0), _two_lists, seed=1)
    design = st.build_design({"a": [a], "same": [a], "b": [_model("b", _noisy(0.1), _two_lists, seed=2)],
                              "c": [_model("c", _noisy(0.0), _two_lists, seed=3)]})
    assert st.permutation_pvalues(design, "a", "same", ["total_score"], 500, 0)["total_score"] == 1.0
    assert st.permutation_pvalues(design, "a", "b", ["total_score", "color"], 500, 0)["total_score"] < 0.01
    # Under the null the p-values are about uniform (seen: 1 of 40 below 0.05, median 0.49).
    null = []
    for r in range(20):
        x = _model("x", _noisy(0.0, prompt_seed=r), _two_lists, seed=100 + r)
        y = _model("y", _noisy(0.0, prompt_seed=r), _two_lists, seed=200 + r)
        null.append(st.permutation_pvalues(st.build_design({"x": [x], "y": [y]}), "x", "y", ["total_score"], 200, r)["total_score"])
    assert np.mean(np.array(null) < 0.05) <= 0.2 and 0.2 < np.median(null) < 0.8
    rows = st.pairwise(design, st.bootstrap(design, 200, 0), ["total_score"], 300, 0)
    assert len(rows) == 6 and all(r["p_holm"] >= r["p"] for r in rows)


def test_variance_components_predict_the_spread_of_a_total_difference():
    # Over many synthetic replicates, the variance of the observed Total difference matches
    # the components' prediction (prompt effects redrawn each replicate, as a new prompt set).
    deltas, predicted = [], []
    for r in range(60):
        a = _model("a", _noisy(0.0, prompt_sd=0.05, video_sd=0.2, prompt_seed=1000 + r), _two_lists, seed=r)
        b = _model("b", _noisy(0.0, prompt_sd=0.05, video_sd=0.2, prompt_seed=2000 + r), _two_lists, seed=500 + r)
        design = st.build_design({"a": [a], "b": [b]})
        deltas.append(design.point("a")["total_score"] - design.point("b")["total_score"])
        predicted.append(st.variance_components(design, "a", "b").variance())
    assert np.var(deltas, ddof=1) == pytest.approx(np.mean(predicted), rel=0.45)
    comp = st.variance_components(design, "a", "b")
    # More videos shrink only the within-prompt part; the MDE falls but not below its floor.
    assert st.minimum_detectable_effect(comp, videos=25) < st.minimum_detectable_effect(comp)
    floor = 100 * (st.Z_95 + 0.8416212335729143) * math.sqrt(sum(t / p for p, t, _ in comp.prompt_terms))
    assert st.minimum_detectable_effect(comp, videos=1e9) == pytest.approx(floor, rel=1e-6)
    table = st.detectable_effects(comp)
    assert not table["seed_variance_known"] and all(r["seeds"] == 1 for r in table["grid"])


def test_held_out_composites_renormalise_each_group():
    values = {d: 0.5 for d in DIMS} | {"temporal_style": 0.9, "overall_consistency": 0.1}
    full = st.composites(values, "tiny")
    held = st.composites(values, "tiny", exclude=["temporal_style", "overall_consistency"])
    assert held["quality_score"] == pytest.approx(full["quality_score"])
    assert held["semantic_score"] == pytest.approx(0.5)
    assert st.composites(values, "tiny", exclude=DIMS[7:]) is None


def test_leakage_flags_exactly_the_expected_cells_for_the_real_configs():
    ms = {"teacher": "ms", "variant": "vcm+img+vid", "rm_img": "hpsv21", "rm_vid": "viclip"}
    cells = leakage.leaking_cells("vbench", ms)
    assert {c["dimension"] for c in cells if c["kind"] == "weights"} == {"temporal_style", "overall_consistency"}
    assert {c["dimension"] for c in cells if c["kind"] == "family"} == {"background_consistency", "aesthetic_quality", "appearance_style"}
    vc2 = {"teacher": "vc2", "variant": "vcm+img+vid", "rm_img": "hpsv21", "rm_vid": "internvid2"}
    cells = leakage.leaking_cells("vbench", vc2)
    assert [c for c in cells if c["kind"] == "weights"] == []
    assert {c["dimension"] for c in cells} == {"background_consistency", "aesthetic_quality", "appearance_style"}
    assert leakage.leaking_cells("vbench", {"teacher": "vc2", "variant": "vcm"}) == []
    assert leakage.leaking_cells("vbench", None) == []  # the teacher trained on nothing
    tiny = leakage.leaking_cells("tiny", {"teacher": "tiny", "variant": "vcm+img+vid", "rm_img": "image", "rm_vid": "viclip"})
    assert [(c["dimension"], c["kind"]) for c in tiny] == [("overall_consistency", "family")]
    assert leakage.leaking_cells("tiny", {"teacher": "tiny", "variant": "vcm+vid", "rm_vid": "internvid2"}) == []
    assert set(leakage.VBENCH_EVALUATORS) == set(DIMS) == set(leakage.TINY_EVALUATORS)


def _write_folder(folder: Path, model: ModelResults, config: dict | None = None) -> Path:
    scores = folder / "scores" / "x-tiny"
    scores.mkdir(parents=True)
    for d in DIMS:
        (scores / f"{d}_eval_results.json").write_text(json.dumps({d: [model.dimensions[d], model.per_video[d]]}))
    (scores / "bench_scoring.json").write_text(json.dumps({"benchmark": "tiny"}))
    if config is not None:
        (folder / "run.json").write_text(json.dumps({"kind": "train", "config": config}))
    return folder


def test_bench_compare_writes_the_matrix_mde_and_leakage(tmp_path):
    from bench.cli import _register_verbs, app

    _register_verbs()
    lists = lambda d: [f"p{k}" for k in range(8)]  # noqa: E731
    a = _write_folder(tmp_path / "vcm", _model("vcm", _noisy(0.0), lists, seed=1), {"teacher": "tiny", "variant": "vcm"})
    b = _write_folder(tmp_path / "turbo", _model("turbo", _noisy(0.1), lists, seed=2),
                      {"teacher": "tiny", "variant": "vcm+img+vid", "rm_img": "image", "rm_vid": "viclip"})
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp"), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "cmp.md").read_text()
    for heading in ("## All pairs", "## Detectable effects", "## Reward / judge leakage", "Held-out Total"):
        assert heading in md
    data = json.loads((tmp_path / "cmp.json").read_text())
    total = next(r for r in data["pairs"] if r["metric"] == "total_score")
    assert total["a"] == "vcm" and total["difference"] < 0 and total["p"] < 0.05
    assert data["leakage"]["cells"]["turbo"][0]["dimension"] == "overall_consistency"
    assert (tmp_path / "cmp_pairs.png").stat().st_size > 1000
    # One model is not a comparison: exit 2, nothing written.
    result = CliRunner().invoke(app, ["compare", str(a), "--out", str(tmp_path / "one")])
    assert result.exit_code == 2 and not list(tmp_path.glob("one*"))
