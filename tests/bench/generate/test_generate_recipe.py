"""`bench generate --origin-steps` and `--teacher-protocol` through the CLI (tiny random run)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import generate as G

from .test_generate import cli, said  # noqa: F401
from .test_generate import run_dir, zoo  # noqa: F401 (fixtures)


def _records(out):
    return list(G.read_manifest(out).values())


def test_origin_steps_default_follows_the_runs_grid_and_can_be_set(run_dir, tmp_path):  # noqa: F811
    args = ["--run", str(run_dir), "--suite", "tiny", "--dimension", "color", "--videos-per-prompt", "1"]
    res = cli([*args, "--out", str(tmp_path / "v1"), "--steps", "4"])
    assert res.exit_code == 0, res.output
    recs = _records(tmp_path / "v1")
    assert recs and all(r["origin_steps"] == 50 and r["timesteps"] == [999, 759, 519, 279] for r in recs)

    res = cli([*args, "--out", str(tmp_path / "l200"), "--steps", "4", "--origin-steps", "200"])
    assert res.exit_code == 0, res.output
    assert all(r["origin_steps"] == 200 and r["timesteps"] == [999, 749, 499, 249] for r in _records(tmp_path / "l200"))
    gen = json.loads((tmp_path / "l200" / G.GENERATION_NAME).read_text())
    assert gen["config"]["origin_steps"] == 200 and gen["config"]["teacher_protocol"] is None

    # A v2 student (k = 5, N = 200) samples on L = 200 by default.
    v2 = tmp_path / "v2run"
    shutil.copytree(run_dir, v2, ignore=shutil.ignore_patterns("videos"))
    record = json.loads((v2 / "run.json").read_text())
    record["config"]["skip"] = 5
    (v2 / "run.json").write_text(json.dumps(record))
    res = cli(["--run", str(v2), "--suite", "tiny", "--dimension", "color", "--videos-per-prompt", "1", "--steps", "4",
               "--out", str(tmp_path / "v2")])
    assert res.exit_code == 0, res.output
    assert all(r["origin_steps"] == 200 and r["timesteps"] == [999, 749, 499, 249] for r in _records(tmp_path / "v2"))


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--origin-steps", "7"], "divisor of 1000"),
        (["--origin-steps", "50", "--steps", "60"], "--steps 60"),
        (["--teacher", "--origin-steps", "200"], "--origin-steps applies"),
        (["--teacher-protocol", "native"], "--teacher-protocol applies"),
        (["--teacher", "--teacher-protocol", "sometimes"], "choose one of matched, native"),
        (["--teacher", "--teacher-protocol", "native", "--timestep-spacing", "leading"], "does not apply"),
        (["--teacher", "--teacher-protocol", "native"], "no sampler of its own"),  # the tiny teacher
    ],
)
def test_bad_protocol_options_exit_2_and_write_nothing(run_dir, tmp_path, extra, needle):  # noqa: F811
    out = tmp_path / "out"
    res = cli(["--run", str(run_dir), "--suite", "tiny", "--dimension", "color", "--videos-per-prompt", "1",
               "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    assert needle in said(res), res.output
    assert not any(out.glob("*.mp4"))


def test_default_teacher_folders_keep_the_protocols_apart():
    assert G.default_label("vbench", "teacher", 50) == "vbench_teacher50"
    assert G.default_label("vbench", "teacher", 50, "native") == "vbench_teacher50_native"
