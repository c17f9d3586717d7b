"""The ablation's speed table (speedups beside their NFE limit) and its job order."""

import json

import pytest

from bench.ablate import AblationSpec, TEACHER, plan_entries, speed_markdown, speed_rows, submission_order


def _manifest(folder, nfe, steps, sampling, seconds, n=3):
    folder.mkdir(parents=True)
    with open(folder / "manifest.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"file": f"p-{i}.mp4", "nfe": nfe, "steps": steps, "sampling_seconds": sampling,
                                 "seconds": seconds}) + "\n")
    return str(folder)


def test_speed_rows_and_table_put_each_speedup_beside_its_nfe_limit(tmp_path):
    entries = [
        {"name": "vcm", "videos": _manifest(tmp_path / "vcm", nfe=4, steps=4, sampling=0.05, seconds=0.08)},
        {"name": TEACHER, "videos": _manifest(tmp_path / "t", nfe=100, steps=50, sampling=1.0, seconds=1.2)},
    ]
    rows = {r["model"]: r for r in speed_rows(entries)}
    vcm = rows["vcm"]
    assert vcm["nfe_limit"] == pytest.approx(25.0)
    assert vcm["speedup_vs_teacher"] == pytest.approx(20.0)
    assert vcm["fraction_of_nfe_limit"] == pytest.approx(0.8)
    assert vcm["end_to_end_speedup_vs_teacher"] == pytest.approx(15.0)
    assert vcm["end_to_end_fraction_of_nfe_limit"] == pytest.approx(0.6)
    assert rows[TEACHER]["nfe_limit"] == pytest.approx(1.0)
    lines = speed_markdown(list(rows.values()))
    row = next(line for line in lines if line.startswith("| vcm "))
    # Sampling-only and end-to-end figures, each speedup with its limit.
    assert "| 0.0500 | 20.0x of 25x | 0.0800 | 15.0x of 25x |" in row
    assert "(of NFE limit)" in lines[2]


def test_speed_table_without_a_teacher_has_no_limit(tmp_path):
    rows = speed_rows([{"name": "vcm", "videos": _manifest(tmp_path / "vcm", nfe=4, steps=4, sampling=0.05, seconds=0.08)}])
    line = speed_markdown(rows)[-1]
    assert "of" not in line.split("|")[5] and "—" in line


def test_jobs_are_submitted_longest_first_and_reported_in_the_spec_order():
    spec = AblationSpec()
    entries = plan_entries(spec)
    order = [e["name"] for e in submission_order(spec, entries)]
    # The 50-step teacher's generation (305 videos x 100 NFE) starts first, T2V-Turbo's two
    # trainings (both rewards) next, plain VCM last; nothing is dropped.
    assert order[0] == TEACHER and order[-1] == "vcm"
    assert set(order[1:3]) == {"vcm+img+vid-viclip", "vcm+img+vid-internvid2"}
    assert sorted(order) == sorted(e["name"] for e in entries)
    assert [e["name"] for e in entries][-1] == TEACHER  # plan order (the report's) is unchanged
