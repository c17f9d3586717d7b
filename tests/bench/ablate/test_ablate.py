"""bench ablate end to end on a random-weight zoo: every stage, the report, the resume."""

import json

import pandas as pd
import yaml
from typer.testing import CliRunner

from bench.cli import _register_verbs, app


def _config(tmp_path, zoo):
    cfg = {
        "name": "mini",
        "train_config": "tiny",
        "train_overrides": [f"weights.tiny_zoo={zoo}", "steps=2", "batch_size=2", "lora_rank=4", "lora_alpha=4", "checkpoint_every=2"],
        "variants": [{"variant": "vcm"}, {"variant": "vcm+img+vid", "rm_vid": "internvid2"}],
        "student_steps": 4,
        "teacher_steps": 3,
        "dimensions": ["color", "object_class", "temporal_style"],
        "videos_per_prompt": 2,
        "seed": 7,
        "generate_batch": 16,
        "jobs": 2,
        "bootstrap": 100,
        "work_dir": str(tmp_path / "runs"),
        "report": str(tmp_path / "reports" / "mini"),
    }
    path = tmp_path / "ablate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ablation_trains_generates_scores_reports_and_resumes(random_zoo, tmp_path):
    _register_verbs()
    config = _config(tmp_path, random_zoo)
    result = CliRunner().invoke(app, ["ablate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "reports" / "mini.csv")
    assert list(table["model"]) == ["vcm", "vcm+img+vid-internvid2", "teacher"]
    assert list(table["variant"]) == ["vcm", "vcm+img+vid", "teacher"]
    assert table["rm_vid"].fillna("").tolist() == ["", "internvid2", ""]
    assert table["steps"].tolist() == [4, 4, 3] and table["nfe"].tolist() == [4, 4, 6]
    for column in ("color", "object_class", "temporal_style", "total_score_ci_low", "speedup_vs_teacher"):
        assert column in table.columns
    assert table["color"].notna().all()
    for suffix in ("md", "json", "_ci.png", "_dimensions.png", "_composites.png", "_speed.png"):
        name = f"mini.{suffix}" if not suffix.startswith("_") else f"mini{suffix}"
        assert (tmp_path / "reports" / name).is_file(), name
    run = json.loads((tmp_path / "runs" / "vcm+img+vid-internvid2" / "run.json").read_text())
    assert run["status"] == "finished" and run["config"]["rm_vid"] == "internvid2"
    # The trainings shared their steps' batches and teacher passes (bench.step_cache) while they
    # ran (how many each read depends on which started first); the records are gone once all finished.
    assert "shared_steps_read" in run
    assert not (tmp_path / "runs" / "shared-steps").exists()
    # What the workers' allocator ran with is recorded (bench/ablate/run.py: WORKER_ENVIRONMENT).
    assert set(json.loads((tmp_path / "runs" / "ablation.json").read_text())["worker_environment"]) == {
        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    # The report keeps what it was made from: the spec, every run record, the training logs.
    kept = tmp_path / "reports" / "mini_runs"
    assert json.loads((kept / "ablation_spec.json").read_text())["name"] == json.loads(
        (tmp_path / "reports" / "mini.json").read_text())["spec"]["name"]
    assert json.loads((kept / "vcm+img+vid-internvid2" / "run.json").read_text()) == run
    assert (kept / "vcm" / "train_log.csv").read_text().startswith("step,")
    assert (kept / "teacher" / "run.json").is_file() and not (kept / "teacher" / "train_log.csv").exists()
    # Every variant's training curves in one TensorBoard log directory (a run each), so they overlay.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "runs" / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == ["vcm", "vcm+img+vid-internvid2"]
    for name in ("vcm", "vcm+img+vid-internvid2"):
        acc = EventAccumulator(str(board / name))
        acc.Reload()
        assert [e.step for e in acc.Scalars("loss/consistency")][-1] == 2  # steps=2
    assert "reward/video" in acc.Tags()["scalars"]
    # Same seeds for every model: the videos of one prompt/index share their seed.
    seeds = [json.loads(l)["seed"] for m in ("vcm", "teacher") for l in
             (tmp_path / "runs" / m / "videos").glob("*/manifest*.jsonl").__next__().read_text().splitlines()[:1]]
    assert seeds[0] == seeds[1]

    # Interrupted after scoring one model: remove one result, rerun; only that is redone.
    scores = tmp_path / "runs" / "vcm" / "scores" / "tiny_4step-tiny"
    (scores / "color_eval_results.json").unlink()
    before = (tmp_path / "runs" / "teacher" / "scores" / "tiny_teacher3-tiny" / "color_eval_results.json").stat().st_mtime
    first = {m["name"]: m["timings"] for m in json.loads((tmp_path / "reports" / "mini.json").read_text())["models"]}
    result = CliRunner().invoke(app, ["ablate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    # The resumed pass skipped the teacher's generation: its recorded time is the first pass's.
    again = {m["name"]: m["timings"] for m in json.loads((tmp_path / "reports" / "mini.json").read_text())["models"]}
    assert first["teacher"]["generate_seconds"] > 0
    assert again["teacher"]["generate_seconds"] >= first["teacher"]["generate_seconds"]
    assert (scores / "color_eval_results.json").is_file()
    assert (tmp_path / "runs" / "teacher" / "scores" / "tiny_teacher3-tiny" / "color_eval_results.json").stat().st_mtime == before


def test_ablation_refuses_changed_settings_in_the_same_work_dir(random_zoo, tmp_path):
    _register_verbs()
    config = _config(tmp_path, random_zoo)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ablation.json").write_text(json.dumps({"spec": {"seed": 1}}))
    result = CliRunner().invoke(app, ["ablate", "--config", str(config)])
    assert result.exit_code == 2 and "different settings" in result.output  # bad input: exit 2


def test_bad_ablation_config_exits_2(tmp_path):
    _register_verbs()
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"variants": [{"variant": "vcm+img"}]}))
    result = CliRunner().invoke(app, ["ablate", "--config", str(path)])
    assert result.exit_code == 2 and "vcm" in result.output


def test_the_three_seed_spec_is_the_demo_with_seeds_counted():
    """The committed 3-seed report's spec differs from `make demo`'s only where seeds are counted:
    same variants, prompts, videos and statistics; its own work_dir and report prefix."""
    import dataclasses

    from bench.ablate import CONFIG_DIR, load_spec, plan_entries

    demo = dataclasses.asdict(load_spec(CONFIG_DIR / "ablate_tiny.yaml"))
    seeds = dataclasses.asdict(load_spec(CONFIG_DIR / "ablate_tiny_3seeds.yaml"))
    differ = {k for k in demo if demo[k] != seeds[k]}
    assert differ == {"name", "train_seeds", "work_dir", "report"}
    assert seeds["train_seeds"] == [0, 1, 2] and demo["train_seeds"] is None
    assert seeds["work_dir"] != demo["work_dir"] and seeds["report"] != demo["report"]
    names = [e["name"] for e in plan_entries(load_spec(CONFIG_DIR / "ablate_tiny_3seeds.yaml"))]
    assert len(names) == 3 * len(demo["variants"]) + 1 and "vcm-seed2" in names


def test_the_workers_keep_freed_memory_unless_the_user_set_the_allocator(monkeypatch):
    """The ablation's spawned workers start with glibc's allocator told to keep freed blocks
    (bench/ablate/run.py: WORKER_ENVIRONMENT); a value the user set wins."""
    import os

    from bench.ablate.run import WORKER_ENVIRONMENT, worker_context

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    ctx, env = worker_context()
    assert env == {"MALLOC_MMAP_THRESHOLD_": WORKER_ENVIRONMENT["MALLOC_MMAP_THRESHOLD_"], "MALLOC_TRIM_THRESHOLD_": "12345"}
    with ctx.Pool(1) as pool:
        seen = pool.map(os.getenv, ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
    assert seen == [WORKER_ENVIRONMENT["MALLOC_MMAP_THRESHOLD_"], "12345"]
