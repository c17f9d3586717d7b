"""The ablation's statistics on synthetic results: paired bootstrap CIs over prompts."""

from pathlib import Path

import numpy as np
import pytest

from bench.ablate import bootstrap_composites, prompt_of
from bench.report import ModelResults
from bench.tinyworld.suite import DIMENSIONS, tiny_suite


def test_prompt_of_parses_vbench_names():
    assert prompt_of("/x/a red circle-3.mp4") == "a red circle"
    assert prompt_of("a-b-c-12.mp4") == "a-b-c"
    with pytest.raises(ValueError):
        prompt_of("no index.mp4")


def _model(name, value_fn, seed=0):
    rng = np.random.default_rng(seed)
    per_video, dims = {}, {}
    for dim in DIMENSIONS:
        vids = []
        for entry in tiny_suite([dim]):
            for i in range(5):
                vids.append({"video_path": f"/v/{entry.prompt}-{i}.mp4", "video_results": float(value_fn(dim, entry.prompt, i, rng))})
        per_video[dim] = vids
        dims[dim] = float(np.mean([v["video_results"] for v in vids]))
    return ModelResults(name=name, dimensions=dims, per_video=per_video, benchmark="tiny", source_files=(), folder=Path("."))


def test_identical_models_have_zero_difference_and_a_better_model_excludes_zero():
    base = lambda d, p, i, rng: np.clip(0.5 + 0.2 * rng.standard_normal(), 0, 1)
    vcm = _model("vcm", base, seed=1)
    same = _model("same", base, seed=1)
    better = _model("better", lambda d, p, i, rng: np.clip(base(d, p, i, rng) + 0.1, 0, 1), seed=1)
    cis = bootstrap_composites([vcm, same, better], n=300, seed=0, reference="vcm")
    assert cis["same"]["delta_total_score"] == (0.0, 0.0)
    lo, hi = cis["better"]["delta_total_score"]
    assert 0 < lo < hi < 15
    t_lo, t_hi = cis["vcm"]["total_score"]
    assert t_lo < 100 * vcm.composite_scores()["total_score"] < t_hi


def test_noise_only_difference_has_an_interval_covering_zero():
    a = _model("vcm", lambda d, p, i, rng: rng.random(), seed=1)
    b = _model("other", lambda d, p, i, rng: rng.random(), seed=2)
    lo, hi = bootstrap_composites([a, b], n=300, seed=0, reference="vcm")["other"]["delta_total_score"]
    assert lo < 0 < hi
