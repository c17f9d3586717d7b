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


def _fake_job(root, name, model, variant, rm_vid, value_fn, seed, train_seed=None):
    """A finished ablation job on disk: run.json, a manifest and tiny-benchmark result files."""
    import json

    run_dir = root / name
    scores = run_dir / "scores" / "tiny_4step-tiny"
    videos = run_dir / "videos" / "tiny_4step"
    scores.mkdir(parents=True)
    videos.mkdir(parents=True)
    m = _model(model, value_fn, seed=seed)
    for dim in DIMENSIONS:
        (scores / f"{dim}_eval_results.json").write_text(json.dumps({dim: [m.dimensions[dim], m.per_video[dim]]}))
    (scores / "bench_scoring.json").write_text(json.dumps({"benchmark": "tiny"}))
    steps = 50 if variant == "teacher" else 4
    (videos / "manifest.jsonl").write_text(json.dumps({"file": "x-0.mp4", "steps": steps, "nfe": 2 * steps if steps == 50 else steps,
                                                       "seconds": 0.1 * steps, "sampling_seconds": 0.09 * steps}) + "\n")
    config = None if variant == "teacher" else {"teacher": "tiny", "variant": variant, "rm_img": "image", "rm_vid": rm_vid or "viclip", "seed": train_seed or 0}
    (run_dir / "run.json").write_text(json.dumps({"kind": "teacher" if config is None else "train", "config": config}))
    entry = {"name": name, "model": model, "variant": variant, "run_dir": str(run_dir), "videos": str(videos),
             "scores": str(scores), "timings": {}}
    if rm_vid:
        entry["rm_vid"] = rm_vid
    if train_seed is not None:
        entry["train_seed"] = train_seed
    return entry


def test_ablation_report_with_training_seeds_has_pairs_seeds_mde_and_leakage(tmp_path):
    import json

    import pandas as pd

    from bench.ablate import AblationSpec, plan_entries, write_ablation_report

    spec = AblationSpec(variants=[{"variant": "vcm"}, {"variant": "vcm+img+vid", "rm_vid": "viclip"}], train_seeds=[0, 1, 2],
                        bootstrap=200, work_dir=str(tmp_path / "runs"), report=str(tmp_path / "rep" / "seeds"))
    spec.validate()
    planned = plan_entries(spec)
    assert [e["name"] for e in planned] == ["vcm-seed0", "vcm-seed1", "vcm-seed2", "vcm+img+vid-viclip-seed0",
                                            "vcm+img+vid-viclip-seed1", "vcm+img+vid-viclip-seed2", "teacher"]
    base = lambda d, p, i, rng: np.clip(0.5 + 0.1 * rng.standard_normal(), 0, 1)  # noqa: E731
    entries = []
    for e in planned:
        shift = {"vcm": 0.0, "vcm+img+vid-viclip": 0.08, "teacher": 0.04}[e["model"]] + 0.02 * e.get("train_seed", 0)
        fn = lambda d, p, i, rng, s=shift: np.clip(base(d, p, i, rng) + s, 0, 1)  # noqa: E731
        entries.append(_fake_job(tmp_path / "runs", e["name"], e["model"], e["variant"], e.get("rm_vid"), fn,
                                 seed=len(entries), train_seed=e.get("train_seed")))
    write_ablation_report(spec, entries)
    table = pd.read_csv(tmp_path / "rep" / "seeds.csv")
    assert list(table["model"]) == ["vcm", "vcm+img+vid-viclip", "teacher"]
    md = (tmp_path / "rep" / "seeds.md").read_text()
    for text in ("## All pairs", "## Training seeds", "## Detectable effects", "## Reward / judge leakage",
                 "Held-out Total (the same weights or family left out)", "two-level"):
        assert text in md, text
    data = json.loads((tmp_path / "rep" / "seeds.json").read_text())
    stats = data["statistics"]
    assert len(stats["seeds"]["vcm"]["totals"]) == 3 and stats["detectable_effects"]["seed_variance_known"]
    pair = next(r for r in stats["pairs"] if r["metric"] == "total_score" and r["b"] == "vcm+img+vid-viclip")
    assert pair["a"] == "vcm" and pair["difference"] < 0 and pair["p_holm"] < 0.05
    assert stats["leakage"]["cells"]["teacher"] == [] and stats["leakage"]["cells"]["vcm"] == []
    assert [c["dimension"] for c in stats["leakage"]["cells"]["vcm+img+vid-viclip"]] == ["overall_consistency"]
    assert (tmp_path / "rep" / "seeds_pairs.csv").is_file() and (tmp_path / "rep" / "seeds_pairs.png").is_file()


def test_train_seeds_must_be_distinct_non_negative_integers():
    from bench.ablate import AblationSpec
    from bench.config import ConfigError

    for bad in ([], [0, 0], [-1], ["a"]):
        with pytest.raises(ConfigError, match="train_seeds"):
            AblationSpec(train_seeds=bad).validate()
