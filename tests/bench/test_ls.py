"""`bench ls`: the lists come from the tables the verbs check against."""

import json

from typer.testing import CliRunner

from bench import ls
from bench.config import VARIANTS, load_config
from bench.models import VIDEO_REWARDS, canonical
from tests.helpers.cli import verb_app


def run(*args):
    return CliRunner().invoke(verb_app(ls), ["ls", *args])


def test_ls_lists_every_topic_but_runs_by_default():
    res = run()
    assert res.exit_code == 0, res.output
    for topic in ("configs:", "teachers:", "variants:", "suites:", "dimensions:", "reward-models:", "benchmarks:"):
        assert topic in res.output
    assert "runs:" not in res.output
    for name in (*VARIANTS, "tiny", "vc2", "ms", "ablate_tiny", "viclip", "internvid2", "hpsv21", "overall_consistency"):
        assert f"  {name} " in res.output or res.output.count(f"  {name}\n"), name


def test_ls_dimensions_are_the_16_of_vbench_grouped():
    res = run("dimensions")
    rows = [line.split() for line in res.output.splitlines()[1:]]
    assert len(rows) == 16 and {r[1] for r in rows} == {"quality", "semantic"}


def test_ls_runs_lists_run_directories_with_their_status(tmp_path):
    run_dir = tmp_path / "r1"
    (run_dir / "videos" / "tiny_4step").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"kind": "train", "status": "finished",
                                                  "config": {"teacher": "tiny", "variant": "vcm"}}))
    (tmp_path / "not-a-run").mkdir()
    res = run("runs", "--dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "r1  train tiny vcm finished videos: tiny_4step" in res.output
    assert "not-a-run" not in res.output


def test_ls_bad_topic_or_missing_folder_is_bad_input(tmp_path):
    assert run("nonsense").exit_code == 2
    res = run("runs", "--dir", str(tmp_path / "absent"))
    assert res.exit_code == 2 and "no runs folder" in res.output


def test_a_models_old_spelling_is_an_alias_in_configs():
    assert canonical("internvideo2", VIDEO_REWARDS) == "internvid2"
    cfg = load_config("tiny", ["rm_vid=internvideo2"])
    assert cfg.rm_vid == "internvid2"  # recorded (and reported) under the one spelling
    assert load_config("tiny", [], rm_vid="internvideo2").rm_vid == "internvid2"
