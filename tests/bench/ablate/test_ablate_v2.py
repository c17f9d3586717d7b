"""The T2V-Turbo-v2 ablation: its committed spec (cheap: nothing is trained) and, slow, the
whole pipeline (cache -> train -> generate at two step counts -> score -> report, reuse)."""

import dataclasses
import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from bench.cli import _register_verbs, app

SPEC = "ablate_tiny_v2.yaml"


def _spec():
    from bench.ablate import CONFIG_DIR
    from bench.ablate.v2 import load_v2_spec

    return load_v2_spec(CONFIG_DIR / SPEC)


def test_the_v2_spec_has_the_rows_the_issue_asks_for():
    """v1 T2V-Turbo at 4 steps; v2 without and with motion guidance at 4 and 16 steps; the
    decoupling and image-reward rows; the teacher; the v1 ablation's statistics."""
    from bench.ablate import CONFIG_DIR, load_spec
    from bench.v2 import V2Settings, cache_identity

    spec = _spec()
    assert spec.models() == ["t2v-turbo-v1@4", "v2-no-mg@4", "v2-no-mg@16", "v2-mg@4", "v2-mg@16", "v2-mg-coupled@16",
                             "v2-mg-no-img@16", "teacher@50"]
    rows = {r["name"]: r for r in spec.rows}
    demo = load_spec(CONFIG_DIR / "ablate_tiny.yaml")
    # Paired with the v1 ablation: the same prompts, videos, seed, w and bootstrap.
    for key in ("suite", "benchmark", "videos_per_prompt", "seed", "guidance_scale", "bootstrap", "generate_batch"):
        assert getattr(spec, key) == getattr(demo, key), key
    # The v1 row is the demo's T2V-Turbo (ViCLIP) config, so the demo's run can be reused.
    from bench.config import config_to_dict, load_config

    v1 = spec.row_config(rows["t2v-turbo-v1"])
    assert config_to_dict(v1) == config_to_dict(load_config(demo.train_config, [*demo.train_overrides, "variant=vcm+img+vid",
                                                                                "rm_vid=viclip"]))
    assert rows["t2v-turbo-v1"]["reuse"] == f"{demo.work_dir}/vcm+img+vid-viclip" and v1.skip == 20 and not v1.v2
    settings = {n: V2Settings.from_config(spec.row_config(r)) for n, r in rows.items() if n.startswith("v2")}
    assert settings["v2-no-mg"].motion_gs == 0 and not settings["v2-no-mg"].motion_cond
    for name in ("v2-mg", "v2-mg-coupled", "v2-mg-no-img"):
        assert settings[name].motion_gs == 0.05 and settings[name].tau == 0.5 and settings[name].motion_cond
    assert settings["v2-mg"].decouple_rewards and not settings["v2-mg-coupled"].decouple_rewards
    assert spec.row_config(rows["v2-mg-no-img"]).variant == "vcm+vid" and spec.row_config(rows["v2-mg"]).variant == "vcm+img+vid"
    # Everything else of the v2 rows is one recipe, trained from the one cache the ablation builds.
    base = config_to_dict(spec.row_config(rows["v2-mg"]))
    for name, r in rows.items():
        if name.startswith("v2"):
            cfg = spec.row_config(r)
            assert cfg.skip == 5 and cfg.steps == v1.steps and cfg.v2["cache"] == str(spec.cache_dir)
            differ = {k for k, v in config_to_dict(cfg).items() if base[k] != v}
            assert differ <= {"v2", "variant"}, (name, differ)
            s = settings[name]
            assert cache_identity(cfg, s, s.videos) == cache_identity(spec.cache_config(), V2Settings.from_config(spec.cache_config()),
                                                                       V2Settings.from_config(spec.cache_config()).videos)
    labels = [c[2] for c in spec.contrasts]
    assert {"motion guidance (4 steps)", "motion guidance (16 steps)", "data decoupling (16 steps)", "image reward (16 steps)"} <= set(labels)
    assert ["v2-mg@16", "v2-no-mg@16", "motion guidance (16 steps)"] in spec.contrasts
    assert spec.reference == "t2v-turbo-v1@4"
    assert spec.work_dir.startswith("runs/") and spec.report == "reports/tiny-ablation-v2"  # runs/ is git-ignored


def _write(tmp_path, **changes):
    from bench.ablate import CONFIG_DIR

    raw = yaml.safe_load((CONFIG_DIR / SPEC).read_text())
    raw.update(changes)
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"rows": [{"name": "v2-mg", "overrides": [], "steps": [4], "colour": 1}]}, "unknown key(s) colour"),
    ({"rows": [{"name": "a", "steps": [4]}, {"name": "a", "steps": [16]}]}, "two rows have the same name"),
    ({"rows": [{"name": "a", "steps": []}]}, "steps must be a non-empty list"),
    ({"rows": [{"name": "a", "steps": [4], "overrides": ["v2.videos=128", "v2.tau=0.3"]}]}, "another cache"),
    ({"contrasts": [["v2-mg@8", "v2-no-mg@4", "x"]]}, "contrast ['v2-mg@8', 'v2-no-mg@4']"),
    ({"reference": "nobody@4"}, "reference='nobody@4'"),
    ({"rows": [{"name": "teacher", "steps": [50]}]}, "the teacher row's"),
    ({"preprocess_config": "tiny", "preprocess_overrides": []}, "has no v2 block"),
    ({"preprocess_config": "tiny"}, "would need another cache than the ablation builds (skip differ)"),
])
def test_bad_v2_specs_exit_2_naming_the_problem(tmp_path, changes, message):
    _register_verbs()
    if "rows" in changes and "contrasts" not in changes:
        changes = {**changes, "contrasts": [], "reference": None}
    result = CliRunner().invoke(app, ["ablate", "--config", str(_write(tmp_path, **changes))], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


def _mini(tmp_path, zoo, work, reuse=None):
    common = [f"weights.tiny_zoo={zoo}", "steps=2", "batch_size=2", "lora_rank=4", "lora_alpha=4", "checkpoint_every=2"]
    v2 = [*common, "skip=50", "v2.videos=3", "v2.records_per_shard=2"]
    spec = {
        "kind": "v2", "name": "mini-v2", "preprocess_config": "tiny_v2",
        "preprocess_overrides": [f"weights.tiny_zoo={zoo}", "skip=50", "v2.videos=3", "v2.records_per_shard=2"],
        "rows": [
            {"name": "v1", "train_config": "tiny", "overrides": common, "steps": [2], **({"reuse": reuse} if reuse else {})},
            {"name": "v2-no-mg", "overrides": [*v2, "v2.motion_gs=0", "v2.motion_cond=false"], "steps": [2]},
            {"name": "v2-mg", "overrides": v2, "steps": [2, 3]},
            {"name": "teacher", "teacher": True, "steps": [2]},
        ],
        "contrasts": [["v2-mg@2", "v2-no-mg@2", "motion guidance"], ["v2-mg@3", "v2-mg@2", "3 vs 2 steps"]],
        "reference": "v1@2", "teacher_config": "tiny", "dimensions": ["motion_smoothness", "dynamic_degree"],
        "limit": 3, "videos_per_prompt": 1, "seed": 7, "generate_batch": 8, "jobs": 2, "bootstrap": 50,
        "work_dir": str(tmp_path / work), "report": str(tmp_path / "reports" / work),
    }
    # The teacher's own config must see the random zoo too.
    path = tmp_path / f"{work}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_v2_ablation_end_to_end_with_reuse(random_zoo, tmp_path, monkeypatch):
    """Cache -> train -> generate at each row's steps (v2: the motion-condition schedule) ->
    score -> report; then a second ablation reuses the first's v1 run instead of training it."""
    _register_verbs()
    teacher_cfg = tmp_path / "tiny_teacher.yaml"
    from bench.config import CONFIG_DIR

    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    raw["weights"] = {"tiny_zoo": str(random_zoo)}
    teacher_cfg.write_text(yaml.safe_dump(raw))
    first = _mini(tmp_path, random_zoo, "a")
    spec = yaml.safe_load(first.read_text())
    spec["teacher_config"] = str(teacher_cfg)
    first.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["ablate", "--config", str(first)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "reports" / "a.csv")
    assert list(table["model"]) == ["v1@2", "v2-no-mg@2", "v2-mg@2", "v2-mg@3", "teacher@2"]
    assert table["nfe"].tolist() == [2, 2, 2, 3, 4]
    for column in ("dynamic_degree_ci_low", "motion_smoothness_ci_high"):
        assert column in table.columns and table[column].notna().all()
    md = (tmp_path / "reports" / "a.md").read_text()
    assert "| motion guidance | v2-mg@2 | v2-no-mg@2 |" in md
    gen = json.loads((tmp_path / "a" / "v2-mg" / "videos" / "tiny_3step" / "generation.json").read_text())
    assert gen["v2_motion_condition"]["values"][0] == 0.05 and gen["config"]["origin_steps"] == 20
    assert json.loads((tmp_path / "a" / "v2-no-mg" / "videos" / "tiny_2step" / "generation.json").read_text())[
        "v2_motion_condition"] is None
    assert set(json.loads((tmp_path / "a" / "ablation.json").read_text())["worker_environment"]) == {
        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    kept = tmp_path / "reports" / "a_runs"
    assert (kept / "cache.json").is_file() and (kept / "v2-mg" / "train_log.csv").is_file()
    # Resume: everything is complete, so nothing is trained again and the report is the same.
    before = {p: (tmp_path / "a" / p / "run.json").read_text() for p in ("v1", "v2-mg")}
    assert CliRunner().invoke(app, ["ablate", "--config", str(first)]).exit_code == 0
    assert before == {p: (tmp_path / "a" / p / "run.json").read_text() for p in ("v1", "v2-mg")}
    assert pd.read_csv(tmp_path / "reports" / "a.csv")["total_score"].equals(table["total_score"])

    second = _mini(tmp_path, random_zoo, "b", reuse=str(tmp_path / "a" / "v1"))
    spec = yaml.safe_load(second.read_text())
    spec["teacher_config"] = str(teacher_cfg)
    second.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["ablate", "--config", str(second)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "v1" / "reused_from.json").read_text())["source"] == str((tmp_path / "a" / "v1").resolve())
    assert (tmp_path / "b" / "v1" / "run.json").read_text() == before["v1"]
    assert "was copied from the finished run" in (tmp_path / "reports" / "b.md").read_text()
    b = pd.read_csv(tmp_path / "reports" / "b.csv").set_index("model")
    assert b.loc["v1@2", "dynamic_degree"] == table.set_index("model").loc["v1@2", "dynamic_degree"]
