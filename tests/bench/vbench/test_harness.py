"""`bench score vbench`'s bookkeeping around VBench, with the driver swapped for a fake.

The fake driver (written below, run by this interpreter) takes the real driver's arguments
and writes VBench's result format from the file sizes, so these tests cover what the harness
does around VBench in seconds: provenance, staleness, failures, timeout, lock, devices,
the static filter's plumbing, custom_input, and the submission layout read the way VBench's
scripts/cal_final_score.py reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bench import report as report_module
from bench.scoring import cli as score_module
from bench.vbench import score as score_vbench
from bench.vbench import env as vbench_env
from bench.vbench import weights as vbench_weights
from bench.vbench import suite
from bench.vbench.constants import QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS, VBENCH_TABLE
from tests.helpers.cli import verb_app
from tests.helpers.vbench_caches import empty_weight_caches

REPO = Path(__file__).resolve().parents[3]

FAKE_DRIVER = r'''
import json, os, sys, time, shutil, glob
from pathlib import Path
argv = sys.argv[1:]
def opt(name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default
out = Path(opt("--output-dir")); videos = Path(opt("--videos-dir")); device = opt("--device")
record = Path(os.environ["FAKE_RECORD"])
with open(record, "a") as f:
    f.write(json.dumps({"argv": argv, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time(),
                        "weights_only_env": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}) + "\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
if opt("--action") == "static_filter":
    # Same keep rule as VBench's: sorted names, the first 5 "static" ones (content starts with S).
    info = {}
    (out / "filtered_videos").mkdir(parents=True)
    for p in sorted(glob.glob(str(videos / "*.mp4"))):
        prompt = Path(p).stem.rsplit("-", 1)[0]
        e = info.setdefault(prompt, {"static_count": 0, "static_path": []})
        if e["static_count"] < 5 and Path(p).read_bytes()[:1] == b"S":
            e["static_count"] += 1; e["static_path"].append(p)
    for prompt, e in info.items():
        for i, p in enumerate(e["static_path"]):
            shutil.copy(p, out / "filtered_videos" / f"{prompt}-{i}.mp4")
    (out / "filtered_static_video.json").write_text(json.dumps(info))
    sys.exit(0)
dim = opt("--dimension")
if dim in os.environ.get("FAKE_FAIL", "").split(","):
    print(f"Boom in {dim}", file=sys.stderr); sys.exit(1)
names = sorted(n for n in os.listdir(videos) if n.endswith(".mp4"))
if opt("--mode") == "vbench_standard":
    names = [n for n in names if n.rsplit("-", 1)[1] in ("0.mp4", "1.mp4", "2.mp4", "3.mp4", "4.mp4")]
prompts = json.loads(Path(opt("--prompt-file")).read_text()) if opt("--prompt-file") else {}
per = [{"video_path": str(videos / n), "video_results": (len((videos / n).read_bytes()) % 7) / 10,
        "prompt": prompts.get(n)} for n in names]
agg = sum(v["video_results"] for v in per) / len(per)
(out / f"{dim}_full_info.json").write_text(json.dumps([{"prompt_en": "x", "dimension": [dim]}]))
(out / f"{dim}_eval_results.json").write_text(json.dumps({dim: [agg, per]}))
'''


def _app() -> typer.Typer:
    return verb_app(score_module)


@pytest.fixture
def harness(tmp_path, monkeypatch):
    """Empty weight caches, a fake VBench env (this interpreter) and the fake driver."""
    cache = empty_weight_caches(tmp_path, monkeypatch, unset=("FAKE_FAIL", "FAKE_SLEEP"))
    env_dir = tmp_path / "fake-env"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv(vbench_env.ENV_VAR, str(env_dir))
    fake_env = vbench_env.VBenchEnv(env_dir)
    monkeypatch.setattr(score_vbench.flow, "_install_env_with_progress", lambda: fake_env)

    def no_install(*_a, **_k):
        raise AssertionError("this test must not build a VBench env")

    monkeypatch.setattr(vbench_env, "ensure_env", no_install)
    driver = tmp_path / "fake_driver.py"
    driver.write_text(FAKE_DRIVER)
    monkeypatch.setattr(score_vbench.running, "DRIVER", driver)
    record = tmp_path / "driver-calls.jsonl"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    return {"cache": cache, "record": record, "tmp": tmp_path}


def calls(h) -> list[dict]:
    if not h["record"].exists():
        return []
    return [json.loads(line) for line in h["record"].read_text().splitlines()]


def _videos(folder: Path, dimension: str, n_prompts: int = 2, n_videos: int = 2, content=b"video") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    prompts = [e.prompt for e in suite.load_vbench_suite([dimension])[:n_prompts]]
    for p in prompts:
        for name in suite.standard_video_filenames(p, n_videos):
            (folder / name).write_bytes(content)
    return prompts


def _weights_for(*dimensions: str) -> None:
    """Stand-in files for the dimensions' weights (a torch-zip-looking file where .pth)."""
    for d in dimensions:
        for r in vbench_weights.requirements_for(d):
            r.path.parent.mkdir(parents=True, exist_ok=True)
            r.path.write_bytes(b"stand-in")


def invoke(*args: str):
    return CliRunner().invoke(_app(), ["score", "vbench", *args])


# --------------------------------------------------------------------------- provenance, staleness


def test_per_dimension_provenance_is_merged_and_changed_inputs_are_rescored(harness, tmp_path):
    videos = tmp_path / "videos"
    _videos(videos, "temporal_flickering")
    _videos(videos, "dynamic_degree")
    _weights_for("dynamic_degree")
    out = tmp_path / "out"
    base = ["--videos-dir", str(videos), "--out", str(out), "--device", "cpu"]
    r1 = invoke(*base, "-d", "temporal_flickering")
    assert r1.exit_code == 0, r1.output
    r2 = invoke(*base, "-d", "dynamic_degree")
    assert r2.exit_code == 0, r2.output
    scoring = json.loads((out / ".bench" / "scoring.json").read_text())
    # The second run did not overwrite the first one's record.
    assert set(scoring["dimensions"]) == {"temporal_flickering", "dynamic_degree"}
    for d, rec in scoring["dimensions"].items():
        assert rec["status"] == "complete" and rec["device"] == "cpu" and rec["seconds"] >= 0
        assert rec["inputs"]["videos_dir"] == str(videos.resolve()) and rec["inputs"]["n_videos"] == 4
        assert rec["inputs"]["torch_env"] == {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        assert rec["inputs"]["vbench"] == vbench_env.VBENCH_VERSION
    assert scoring["dimensions"]["temporal_flickering"]["static_filter"] == {
        "ran": False, "reason": "videos not oversampled"}
    assert all(c["weights_only_env"] == "1" for c in calls(harness))

    # Unchanged: both skipped, VBench not started.
    n = len(calls(harness))
    r3 = invoke(*base, "-d", "temporal_flickering", "-d", "dynamic_degree")
    assert r3.exit_code == 0 and r3.output.count("already scored") == 2, r3.output
    assert len(calls(harness)) == n
    # A regenerated video (other size) of dynamic_degree: only that dimension is redone.
    dd = suite.load_vbench_suite(["dynamic_degree"])[0].prompt
    (videos / f"{dd}-0.mp4").write_bytes(b"regenerated, longer")
    r4 = invoke(*base, "-d", "temporal_flickering", "-d", "dynamic_degree")
    assert r4.exit_code == 0, r4.output
    assert "dynamic_degree" in r4.output and "files_sha256" in r4.output
    new_calls = calls(harness)[n:]
    assert [c["argv"][c["argv"].index("--dimension") + 1] for c in new_calls] == ["dynamic_degree"]
    # Another vbench version recorded (as an env rebuilt with another pin would): redone.
    data = json.loads((out / ".bench" / "scoring.json").read_text())
    data["dimensions"]["temporal_flickering"]["inputs"]["vbench"] = "0.1.4"
    (out / ".bench" / "scoring.json").write_text(json.dumps(data))
    r5 = invoke(*base, "-d", "temporal_flickering")
    assert r5.exit_code == 0 and "changed since it was scored: vbench" in r5.output, r5.output


def test_a_result_without_provenance_is_rescored(harness, tmp_path):
    videos = tmp_path / "videos"
    _videos(videos, "temporal_flickering")
    out = tmp_path / "out"
    out.mkdir()
    done = {"temporal_flickering": [0.97, [{"video_path": "x.mp4", "video_results": 0.97}]]}
    (out / "temporal_flickering_eval_results.json").write_text(json.dumps(done))
    (out / "bench_scoring.json").write_text(json.dumps({"benchmark": "vbench", "seconds": {}}))
    (out / "summary.json").write_text(json.dumps({"temporal_flickering": 0.97}))
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "-d", "temporal_flickering")
    assert r.exit_code == 0, r.output
    assert "no provenance record" in r.output and len(calls(harness)) == 1
    # An earlier harness's files are moved out of VBench's way.
    assert not (out / "bench_scoring.json").exists() and not (out / "summary.json").exists()
    assert (out / ".bench" / "legacy" / "bench_scoring.json").exists()


def test_failing_dimensions_are_reported_together_while_the_others_finish(harness, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    for d in ("temporal_flickering", "dynamic_degree", "motion_smoothness"):
        _videos(videos, d)
    _weights_for("dynamic_degree")  # motion_smoothness's AMT-S is missing
    monkeypatch.setenv("FAKE_FAIL", "temporal_flickering")
    out = tmp_path / "out"
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu",
               "-d", "temporal_flickering", "-d", "motion_smoothness", "-d", "dynamic_degree")
    assert r.exit_code == 1, r.output
    assert "2 of 3 dimension(s) failed: temporal_flickering, motion_smoothness" in r.output
    assert "Boom in temporal_flickering" in r.output and "amt-s.pth" in r.output
    assert (out / "dynamic_degree_eval_results.json").exists()  # finished although listed last
    scoring = json.loads((out / ".bench" / "scoring.json").read_text())
    assert scoring["dimensions"]["temporal_flickering"]["status"] == "failed"
    assert scoring["dimensions"]["dynamic_degree"]["status"] == "complete"
    assert scoring["status"] == "failed: temporal_flickering, motion_smoothness"
    assert "dynamic_degree" in r.output.split("error:")[0]  # the finished ones' table first


def test_a_hung_vbench_is_stopped_by_the_timeout(harness, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    _videos(videos, "temporal_flickering")
    monkeypatch.setenv("FAKE_SLEEP", "60")
    out = tmp_path / "out"
    started = time.time()
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu",
               "-d", "temporal_flickering", "--timeout", "2")
    assert time.time() - started < 30
    assert r.exit_code == 1 and "timed out after 2s" in r.output, r.output
    assert "(timeout)" in (out / ".bench" / "logs" / "temporal_flickering.log").read_text()


def test_a_second_run_on_the_same_output_folder_is_refused(harness, tmp_path):
    import fcntl

    videos = tmp_path / "videos"
    _videos(videos, "temporal_flickering")
    out = tmp_path / "out"
    (out / ".bench").mkdir(parents=True)
    with open(out / ".bench" / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "-d", "temporal_flickering")
    assert r.exit_code == 1 and "another `bench score vbench` is writing" in r.output, r.output
    assert calls(harness) == []


def test_devices_run_different_dimensions_at_the_same_time(harness, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    for d in ("temporal_flickering", "dynamic_degree", "motion_smoothness"):
        _videos(videos, d)
    _weights_for("dynamic_degree", "motion_smoothness")
    monkeypatch.setenv("FAKE_SLEEP", "1.5")
    out = tmp_path / "out"
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--devices", "cpu,cpu,cpu",
               "-d", "temporal_flickering", "-d", "dynamic_degree", "-d", "motion_smoothness")
    assert r.exit_code == 0, r.output
    starts = sorted(c["start"] for c in calls(harness))
    assert len(starts) == 3 and starts[-1] - starts[0] < 1.4  # all three started before any finished
    assert all((out / f"{d}_eval_results.json").exists() for d in ("temporal_flickering", "dynamic_degree"))
    assert invoke("--videos-dir", str(videos), "--devices", "0,x").exit_code == 2
    assert invoke("--videos-dir", str(videos), "--devices", "cpu", "--device", "cpu").exit_code == 2


def test_a_cuda_index_is_passed_as_the_only_visible_gpu(harness, tmp_path, monkeypatch):
    """`--devices 0,1`: each worker's VBench sees one GPU, as `cuda` (VBench's launcher's device)."""
    monkeypatch.setattr(score_vbench.inputs, "default_device", lambda: "cuda")
    videos = tmp_path / "videos"
    for d in ("temporal_flickering", "dynamic_degree"):
        _videos(videos, d)
    _weights_for("dynamic_degree")
    r = invoke("--videos-dir", str(videos), "--out", str(tmp_path / "out"), "--devices", "0,1",
               "-d", "temporal_flickering", "-d", "dynamic_degree")
    assert r.exit_code == 0, r.output
    seen = sorted((c["cuda"], c["argv"][c["argv"].index("--device") + 1]) for c in calls(harness))
    assert seen == [("0", "cuda"), ("1", "cuda")]


# --------------------------------------------------------------------------- static filter


def _oversampled(folder: Path, prompt: str, static_indices: set[int]) -> None:
    for i in range(25):
        (folder / f"{prompt}-{i}.mp4").write_bytes((b"S" if i in static_indices else b"M") + bytes(i))


def test_oversampled_videos_go_through_the_static_filter_into_the_same_folder(harness, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    p1, p2 = [e.prompt for e in suite.load_vbench_suite(["temporal_flickering"])[:2]]
    _oversampled(videos, p1, {1, 3, 10, 11, 12, 20, 24})  # 7 static: the first 5 in name order are kept
    _oversampled(videos, p2, {2, 7})  # only 2 static
    (videos / "manifest.jsonl").write_text("{}\n")
    _weights_for("dynamic_degree")  # RAFT, which the filter reads
    out = tmp_path / "out"
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "-d", "temporal_flickering")
    assert r.exit_code == 0, r.output
    assert "hard-codes CUDA" in r.output  # said clearly on a CPU machine
    assert "WITHOUT" not in r.output and "fewer than 5" in r.output
    kinds = [c["argv"][c["argv"].index("--action") + 1] if "--action" in c["argv"] else "evaluate"
             for c in calls(harness)]
    assert kinds == ["static_filter", "evaluate"]
    data = json.loads((out / "temporal_flickering_eval_results.json").read_text())
    scored = sorted(Path(v["video_path"]).name for v in data["temporal_flickering"][1])
    assert scored == sorted([f"{p1}-{i}.mp4" for i in range(5)] + [f"{p2}-{i}.mp4" for i in range(2)])
    assert all(Path(v["video_path"]).parent == (out / ".bench" / "static_filter" / "filtered_videos").resolve()
               for v in data["temporal_flickering"][1])
    # The kept copies are the first static ones in VBench's (string-sorted) order: -1, -10, -11, -12, -20.
    kept_src = [b"S" + bytes(i) for i in (1, 10, 11, 12, 20)]
    kept = [(out / ".bench" / "static_filter" / "filtered_videos" / f"{p1}-{k}.mp4").read_bytes() for k in range(5)]
    assert kept == kept_src
    rec = json.loads((out / ".bench" / "scoring.json").read_text())["dimensions"]["temporal_flickering"]
    assert rec["static_filter"]["ran"] is True
    assert rec["static_filter"]["kept_per_prompt"] == {p1: 5, p2: 2}
    assert rec["static_filter"]["sampled_per_prompt"] == {p1: 25, p2: 25}
    assert rec["inputs"]["static_filter"] is True and rec["inputs"]["n_videos"] == 50
    # The report marks nothing for a filtered temporal_flickering.
    model = report_module.load_results_folder(out)
    assert not any("temporal_flickering" in n for n in model.notes)

    # --no-static-filter: scored unfiltered, loudly, and the report says so.
    r2 = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "-d", "temporal_flickering",
                "--no-static-filter")
    assert r2.exit_code == 0 and "WITHOUT VBench's static filter" in r2.output, r2.output
    assert "changed since it was scored" in r2.output
    model = report_module.load_results_folder(out)
    assert any("temporal_flickering" in n and "static filter" in n for n in model.notes)


def test_the_static_filter_needs_raft(harness, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    p1 = suite.load_vbench_suite(["temporal_flickering"])[0].prompt
    _oversampled(videos, p1, {0})
    r = invoke("--videos-dir", str(videos), "--out", str(tmp_path / "out"), "--device", "cpu",
               "-d", "temporal_flickering", "--static-filter")
    assert r.exit_code == 2 and "raft-things.pth" in r.output and "dropbox" in r.output.lower(), r.output
    assert calls(harness) == []


# --------------------------------------------------------------------------- custom_input


def test_custom_input_scores_prompt_file_videos_with_the_manifest_prompts(harness, tmp_path):
    videos = tmp_path / "custom"
    videos.mkdir()
    long_prompt = "a red fox " * 30  # no suite prompt; the manifest keeps the full text
    names = {"a red fox-0.mp4": long_prompt, "a blue bird-0.mp4": "a blue bird"}
    for n in names:
        (videos / n).write_bytes(b"clip")
    (videos / "manifest.jsonl").write_text(
        "".join(json.dumps({"file": n, "prompt": p, "index": 0}) + "\n" for n, p in names.items()))
    out = tmp_path / "out"
    standard = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "-d", "temporal_flickering")
    assert standard.exit_code == 2 and "no videos" in standard.output  # not VBench's prompts
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "--mode", "custom_input",
               "-d", "temporal_flickering")
    assert r.exit_code == 0, r.output
    data = json.loads((out / "temporal_flickering_eval_results.json").read_text())
    assert {Path(v["video_path"]).name: v["prompt"] for v in data["temporal_flickering"][1]} == names
    rec = json.loads((out / ".bench" / "scoring.json").read_text())["dimensions"]["temporal_flickering"]
    assert rec["inputs"]["mode"] == "custom_input"
    model = report_module.load_results_folder(out)
    assert any("custom_input" in n for n in model.notes)
    refused = invoke("--videos-dir", str(videos), "--mode", "custom_input", "-d", "color")
    assert refused.exit_code == 2 and "custom_input supports" in refused.output
    assert score_vbench.resolve_dimensions(None, "custom_input") == list(score_vbench.CUSTOM_DIMENSIONS)
    assert len(score_vbench.CUSTOM_DIMENSIONS) == 10


# --------------------------------------------------------------------------- weights


def test_weight_check_names_sources_and_catches_truncated_files(harness):
    cache = harness["cache"]
    text = vbench_weights.format_missing(vbench_weights.missing_weights(list(suite.ALL_DIMENSIONS)))
    assert "huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/grit_b_densecap_objectdet.pth" in text
    assert "models--bert-base-uncased" in text and "legacy id" in text
    for d in suite.ALL_DIMENSIONS:
        for r in vbench_weights.requirements_for(d):
            assert r.source, (d, r.what)  # every file says where it comes from
    # A published hash: a cut-off CLIP file is caught.
    clip = cache / "clip_model" / "ViT-B-32.pt"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"PK\x03\x04 the first bytes of a download")
    missing = vbench_weights.missing_weights(["background_consistency"])
    assert "background_consistency" in missing
    assert "does not match the published 40d365715913c9da" in vbench_weights.format_missing(missing)
    # No published hash: a torch zip archive without its end is caught; a whole one passes.
    import torch

    amt = cache / "amt_model" / "amt-s.pth"
    amt.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}}, amt)
    assert vbench_weights.missing_weights(["motion_smoothness"]) == {}
    amt.write_bytes(amt.read_bytes()[: amt.stat().st_size // 2])
    msg = vbench_weights.format_missing(vbench_weights.missing_weights(["motion_smoothness"]))
    assert "truncated" in msg and "huggingface.co/lalala125/AMT" in msg


# --------------------------------------------------------------------------- the submission layout


def _cal_final_score_reading(zip_path: Path, tmp: Path) -> dict[str, float]:
    """How Vchitect/VBench scripts/cal_final_score.py `submission()` reads a zip: every .json at
    the top level and one folder down (names starting with '.' or '__' skipped at the top),
    the first element of each entry of every dict; missing dimensions are 0."""
    target = tmp / "extracted"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(target)
    upload: dict[str, float] = {}

    def take(path: Path) -> None:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            for key in data:
                upload[key.replace("_", " ")] = data[key][0]

    for entry in os.listdir(target):
        if entry.startswith(".") or entry.startswith("__"):
            continue
        p = target / entry
        if p.is_dir():
            for sub in os.listdir(p):
                if sub.endswith(".json"):
                    take(p / sub)
        elif entry.endswith("json"):
            take(p)
    return upload


def _cal_final_score_composites(upload: dict[str, float]) -> dict[str, float]:
    """cal_final_score.py's arithmetic, written out with VBench's constants."""
    t = VBENCH_TABLE
    norm = {}
    for d in t.dimensions:
        lo, hi = t.normalization[d]
        norm[d] = (upload.get(d.replace("_", " "), 0) - lo) / (hi - lo) * t.weights[d]
    q = sum(norm[d] for d in QUALITY_DIMENSIONS) / sum(t.weights[d] for d in QUALITY_DIMENSIONS)
    s = sum(norm[d] for d in SEMANTIC_DIMENSIONS) / sum(t.weights[d] for d in SEMANTIC_DIMENSIONS)
    return {"quality_score": q, "semantic_score": s,
            "total_score": (t.quality_weight * q + t.semantic_weight * s) / (t.quality_weight + t.semantic_weight)}


def test_the_output_folder_zipped_as_vbench_says_gives_bench_reports_composites(harness, tmp_path):
    videos = tmp_path / "videos"
    for i, d in enumerate(suite.ALL_DIMENSIONS):
        _videos(videos, d, n_prompts=1, n_videos=2, content=b"v" * (i + 3))
    _weights_for(*suite.ALL_DIMENSIONS)
    # GRiT's four dimensions need detectron2 in the real env; the fake env pretends it is there.
    site = harness["tmp"] / "fake-env" / "lib" / "python3.11" / "site-packages" / "detectron2"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    out = tmp_path / "out"
    r = invoke("--videos-dir", str(videos), "--out", str(out), "--device", "cpu", "--skip-hash-check",
               "--export-zip", str(tmp_path / "export.zip"))
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*_eval_results.json"))) == 16
    # VBench's README: `cd evaluation_results; zip -r ../evaluation_results.zip .`
    zipped = tmp_path / "evaluation_results.zip"
    shutil.make_archive(str(zipped)[: -len(".zip")], "zip", root_dir=out)
    with zipfile.ZipFile(zipped) as zf:
        assert any(n.startswith(".bench/") for n in zf.namelist())  # the harness's files are in there ...
    upload = _cal_final_score_reading(zipped, tmp_path / "a")  # ... and skipped, as VBench's script does
    assert len(upload) == 16
    ours = report_module.load_results_folder(out).composite_scores()
    theirs = _cal_final_score_composites(upload)
    for k in ("total_score", "quality_score", "semantic_score"):
        assert ours[k] == pytest.approx(theirs[k], abs=1e-6)
    exported = _cal_final_score_reading(tmp_path / "export.zip", tmp_path / "b")
    assert exported == upload
    with zipfile.ZipFile(tmp_path / "export.zip") as zf:
        assert all(n.endswith("_eval_results.json") for n in zf.namelist())
