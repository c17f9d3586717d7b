"""Bad input, every verb: exit 2 (1 for a failed run), a message naming the problem, no
traceback, and nothing written.

Every case runs the real `bench` app in-process (CliRunner), with the working directory in
the test's own folder so that any default output path would land there and be seen. Models
are random-weight stand-ins; the cases that must fail before a model loads check that no
model was loaded at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.tinyworld.suite import tiny_suite
from bench.video_io import write_mp4

_register_verbs()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bad_zoo(random_zoo, tmp_path_factory):
    """The random zoo with its teacher UNet and frame probe cut to half their bytes."""
    d = tmp_path_factory.mktemp("bad_zoo") / "zoo"
    shutil.copytree(random_zoo, d)
    for name in ("teacher_unet.safetensors", "eval_probe.safetensors"):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return d


@pytest.fixture(scope="session")
def finished_run(random_zoo, tmp_path_factory):
    from tests.helpers.tinyworld import make_random_run

    return make_random_run(tmp_path_factory.mktemp("bad_input_run") / "run", random_zoo)


def write_videos(folder: Path, dimension: str, per_prompt: int = 1) -> Path:
    """Random-pixel {prompt}-{i}.mp4 for every tiny-suite prompt of `dimension` (8 frames, 32 px)."""
    rng = np.random.default_rng(0)
    for e in tiny_suite([dimension]):
        for i in range(per_prompt):
            write_mp4(folder / f"{e.prompt}-{i}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=8)
    return folder


@pytest.fixture(scope="session")
def color_videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("color_videos") / "videos", "color")


class World:
    """What a case builds its input from: its own folder (the cwd) and the shared models."""

    def __init__(self, tmp: Path, zoo: Path, bad_zoo: Path, run: Path, color_videos: Path):
        self.tmp, self.zoo, self.bad_zoo = tmp, zoo, bad_zoo
        self.run = tmp / "run"
        shutil.copytree(run, self.run)
        self.color_videos = color_videos
        self.env: dict[str, str] = {}
        self.untouched: list[Path] = []  # files outside tmp that must not change

    def file(self, name: str, data: bytes | str) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p

    def videos(self, dimension: str = "temporal_flickering", damage: str | None = None) -> Path:
        folder = write_videos(self.tmp / "videos", dimension)
        if damage:
            victim = sorted(folder.glob("*.mp4"))[0]
            data = victim.read_bytes()
            victim.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
        return folder

    def results(self, data: object | str) -> Path:
        folder = self.tmp / "results"
        folder.mkdir()
        text = data if isinstance(data, str) else json.dumps(data)
        (folder / "color_eval_results.json").write_text(text)
        return folder

    def ablation(self, **changes) -> Path:
        spec = {"name": "mini", "train_config": "tiny", "train_overrides": [f"weights.tiny_zoo={self.zoo}", "steps=2"],
                "variants": [{"variant": "vcm"}], "work_dir": str(self.tmp / "ab-runs"), "report": str(self.tmp / "ab")}
        spec.update(changes)
        return self.file("ablate.yaml", yaml.safe_dump(spec))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------- the cases
# id: (build(world) -> argv, exit code, words the message must contain)

GEN = ["generate", "--videos-per-prompt", "1", "--device", "cpu"]


def _gen_run(w: World, *extra: str) -> list[str]:
    return [*GEN, "--run", str(w.run), *extra]


def _prompt_file(w: World, text: bytes | str) -> str:
    return str(w.file("prompts.txt", text))


def _symlinked_manifest(w: World) -> list[str]:
    out = w.tmp / "out"
    out.mkdir()
    target = w.file("elsewhere.jsonl", "")
    (out / "manifest.jsonl").symlink_to(target)
    return _gen_run(w, "--prompt-file", _prompt_file(w, "a red circle\n"), "--out", str(out))


def _dangling(w: World) -> list[str]:
    (w.tmp / "out").symlink_to(w.tmp / "nowhere")
    return _gen_run(w, "--prompt-file", _prompt_file(w, "a red circle\n"), "--out", str(w.tmp / "out"))


def _bad_zoo_run(w: World) -> list[str]:
    record = json.loads((w.run / "run.json").read_text())
    record["config"]["weights"]["tiny_zoo"] = str(w.bad_zoo)
    (w.run / "run.json").write_text(json.dumps(record))
    return _gen_run(w, "--prompt-file", _prompt_file(w, "a red circle\n"))


def _train(w: World, *extra: str) -> list[str]:
    return ["train", "--run-dir", str(w.tmp / "r"), f"weights.tiny_zoo={w.zoo}", "steps=2", *extra]


def _yaml_config(w: World, text: str) -> list[str]:
    return ["train", "--config", str(w.file("my.yaml", text)), "--run-dir", str(w.tmp / "r")]


def _resume_corrupt_run_json(w: World) -> list[str]:
    (w.tmp / "r").mkdir()
    (w.tmp / "r" / "run.json").write_text("{not json")
    w.untouched.append(w.tmp / "r" / "run.json")
    return ["train", "--run-dir", str(w.tmp / "r"), "--resume"]


def _resume_damaged_checkpoint(w: World) -> list[str]:
    from bench.config import config_to_dict, load_config
    from bench.runs import run_record, write_json_atomic

    r = w.tmp / "r"
    cfg = load_config("tiny", [f"weights.tiny_zoo={w.zoo}", "steps=2"])
    write_json_atomic(r / "run.json", run_record("train", config_to_dict(cfg), {"seed": 0}, {"status": "running"}))
    ck = r / "checkpoints" / "step-000001"
    ck.mkdir(parents=True)
    (ck / "student.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    (ck / "state.json").write_text('{"step": 1}')
    return ["train", "--run-dir", str(r), "--resume"]


def _score(w: World, folder: Path, *extra: str) -> list[str]:
    return ["score", "tiny", "--videos-dir", str(folder), "--out", str(w.tmp / "scores"), *extra]


CASES = {
    # ---- bench generate
    "generate: prompt file not UTF-8": (lambda w: _gen_run(w, "--prompt-file", _prompt_file(w, b"caf\xe9 red circle\n")), 2, ["not UTF-8", "prompts.txt"]),
    "generate: --out an existing file": (lambda w: _gen_run(w, "--prompt-file", _prompt_file(w, "a red circle\n"), "--out", str(w.file("taken", "x"))), 2, ["existing file", "taken"]),
    "generate: --out a dangling symlink": (_dangling, 2, ["dangling symlink"]),
    "generate: --out under a file": (lambda w: _gen_run(w, "--prompt-file", _prompt_file(w, "a red circle\n"), "--out", str(w.file("taken", "x") / "sub")), 2, ["is a file"]),
    "generate: manifest.jsonl a symlink": (_symlinked_manifest, 2, ["manifest.jsonl", "symlink"]),
    "generate: --device tpu": (lambda w: _gen_run(w, "--suite", "tiny", "--device", "tpu"), 2, ["--device", "tpu"]),
    "generate: --guidance-scale nan": (lambda w: _gen_run(w, "--suite", "tiny", "--guidance-scale", "nan"), 2, ["--guidance-scale", "finite"]),
    "generate: --guidance-scale inf (teacher)": (lambda w: [*GEN, "--teacher", "--config", "tiny", "--suite", "tiny", "--guidance-scale", "inf"], 2, ["--guidance-scale", "finite"]),
    "generate: --guidance-scale -1": (lambda w: _gen_run(w, "--suite", "tiny", "--guidance-scale", "-1"), 2, ["--guidance-scale", ">= 0"]),
    "generate: --seed -5": (lambda w: _gen_run(w, "--suite", "tiny", "--seed", "-5"), 2, ["--seed", ">= 0"]),
    "generate: --batch-size 0": (lambda w: _gen_run(w, "--suite", "tiny", "--batch-size", "0"), 2, ["--batch-size"]),
    "generate: --videos-per-prompt 0": (lambda w: [*_gen_run(w, "--suite", "tiny"), "--videos-per-prompt", "0"], 2, ["--videos-per-prompt"]),
    "generate: --steps out of range": (lambda w: _gen_run(w, "--suite", "tiny", "--steps", "51"), 2, ["--steps 51"]),
    "generate: unknown dimension": (lambda w: _gen_run(w, "--suite", "tiny", "--dimension", "colour"), 2, ["colour"]),
    "generate: ../ in a prompt": (lambda w: _gen_run(w, "--prompt-file", _prompt_file(w, "../../etc/escape\n")), 2, ["file name", "../../etc/escape"]),
    "generate: missing run": (lambda w: [*GEN, "--run", str(w.tmp / "nope"), "--suite", "tiny"], 2, ["run directory not found", "nope"]),
    "generate: truncated zoo file": (_bad_zoo_run, 2, ["teacher_unet.safetensors", "truncated"]),
    # ---- bench train
    "train: lr=inf": (lambda w: _train(w, "lr=inf"), 2, ["lr=inf", "finite"]),
    "train: lr=nan": (lambda w: _train(w, "lr=nan"), 2, ["lr=nan", "finite"]),
    "train: w_max=nan": (lambda w: _train(w, "w_max=nan"), 2, ["w_max", "finite"]),
    "train: ema_decay=1.5": (lambda w: _train(w, "ema_decay=1.5"), 2, ["ema_decay"]),
    "train: steps=0": (lambda w: _train(w, "steps=0"), 2, ["steps=0"]),
    "train: lr=fast": (lambda w: _train(w, "lr=fast"), 2, ["lr"]),
    "train: unknown key": (lambda w: _train(w, "learning_rate=1"), 2, ["learning_rate"]),
    "train: YAML lr as a string": (lambda w: _yaml_config(w, "teacher: tiny\nlr: 1e-5\n"), 2, ["lr", "must be a number"]),
    "train: corrupt YAML": (lambda w: _yaml_config(w, "teacher: [tiny\n"), 2, ["not valid YAML"]),
    "train: --device tpu": (lambda w: _train(w, "--device", "tpu"), 2, ["tpu"]),
    "train: --resume without run.json": (lambda w: [*_train(w), "--resume"], 2, ["no run.json", "without --resume"]),
    "train: --resume, run.json corrupt": (_resume_corrupt_run_json, 2, ["run.json", "unreadable"]),
    "train: --resume, checkpoint truncated": (_resume_damaged_checkpoint, 2, ["step-000001", "student.safetensors", "truncated"]),
    "train: truncated zoo file": (lambda w: ["train", "--run-dir", str(w.tmp / "r"), f"weights.tiny_zoo={w.bad_zoo}"], 2, ["teacher_unet.safetensors", "truncated"]),
    # ---- bench score tiny
    "score tiny: zero-byte mp4": (lambda w: _score(w, w.videos(damage="empty"), "-d", "temporal_flickering"), 2, ["empty (0 bytes)", ".mp4"]),
    "score tiny: cut mp4": (lambda w: _score(w, w.videos(damage="cut"), "-d", "temporal_flickering"), 2, ["cut short", ".mp4"]),
    "score tiny: truncated zoo file": (lambda w: _score(w, w.color_videos, "-d", "color", "--zoo", str(w.bad_zoo)), 2, ["eval_probe.safetensors", "truncated"]),
    "score tiny: unknown dimension": (lambda w: _score(w, w.videos(), "-d", "sharpness"), 2, ["sharpness"]),
    "score tiny: corrupt suite_info.json": (lambda w: (w.file("videos/suite_info.json", "{oops"), _score(w, w.videos(), "-d", "temporal_flickering"))[1], 2, ["suite_info.json", "unreadable"]),
    "score tiny: --threads 0": (lambda w: _score(w, w.videos(), "-d", "temporal_flickering", "--threads", "0"), 2, ["--threads"]),
    "score tiny: missing run": (lambda w: ["score", "tiny", "--run", str(w.tmp / "nope")], 2, ["nope"]),
    # ---- bench report
    "report: corrupt JSON": (lambda w: ["report", str(w.results("{bad")), "--out", str(w.tmp / "rep")], 2, ["not valid JSON"]),
    "report: value outside [0, 1]": (lambda w: ["report", str(w.results({"color": [1.5, []]})), "--out", str(w.tmp / "rep")], 2, ["outside [0, 1]"]),
    "report: missing folder": (lambda w: ["report", str(w.tmp / "nope"), "--out", str(w.tmp / "rep")], 2, ["nope"]),
    # ---- bench ablate
    "ablate: guidance_scale nan": (lambda w: ["ablate", "--config", str(w.ablation(guidance_scale=float("nan")))], 2, ["guidance_scale", "finite"]),
    "ablate: train override lr=inf": (lambda w: ["ablate", "--config", str(w.ablation(train_overrides=[f"weights.tiny_zoo={w.zoo}", "lr=inf"]))], 2, ["lr=inf"]),
    "ablate: videos_per_prompt 0": (lambda w: ["ablate", "--config", str(w.ablation(videos_per_prompt=0))], 2, ["videos_per_prompt"]),
    "ablate: corrupt YAML": (lambda w: ["ablate", "--config", str(w.file("ablate.yaml", "variants: [\n"))], 2, ["not valid YAML"]),
    # ---- bench zoo
    "zoo check: truncated zoo file": (lambda w: ["zoo", "check", "--zoo-dir", str(w.bad_zoo), "--out", str(w.tmp / "gates.json")], 2, ["teacher_unet.safetensors", "truncated"]),
    "zoo check: --threads 0": (lambda w: ["zoo", "check", "--zoo-dir", str(w.zoo), "--threads", "0", "--out", str(w.tmp / "g.json")], 2, ["--threads"]),
    "zoo build: unknown stage": (lambda w: ["zoo", "build", "--stage", "nope", "--zoo-dir", str(w.tmp / "z"), "--work-dir", str(w.tmp / "wk")], 2, ["nope"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, monkeypatch, random_zoo, bad_zoo, finished_run, color_videos):
    build, code, needles = CASES[case]
    monkeypatch.chdir(tmp_path)
    w = World(tmp_path, random_zoo, bad_zoo, finished_run, color_videos)
    args = build(w)
    if not any(k in case for k in ("truncated", "checkpoint")):
        # Inputs that need no model are refused before one is loaded.
        import bench.runs

        def no_model(*a, **k):
            raise AssertionError("a model was loaded for an input that needs none")

        monkeypatch.setattr(bench.runs, "load_run_student", no_model)
        monkeypatch.setattr(bench.runs, "load_teacher", no_model)
    before = snapshot(tmp_path)
    shared = {p: snapshot(p) for p in (random_zoo, bad_zoo, color_videos)}
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400", **w.env})
    out = result.output
    assert result.exit_code == code, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in out and "╭" not in out, out  # no traceback, plain or rich
    assert "moov atom" not in out and "Errno" not in out, out  # no decoder noise
    flat = " ".join(out.split())
    for needle in needles:
        assert needle in flat, (needle, out)
    assert snapshot(tmp_path) == before, "something was written"
    for p, snap in shared.items():
        assert snapshot(p) == snap


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(app, ["--debug", "train", "--run-dir", str(tmp_path / "r"), "lr=inf"])
    assert result.exit_code == 1 and result.exception is not None and not isinstance(result.exception, SystemExit)
    assert "lr=inf" in str(result.exception)


def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path, monkeypatch):
    import bench.config

    def broken(*a, **k):
        raise TypeError("something internal")

    monkeypatch.setattr(bench.config, "load_config", broken)
    monkeypatch.setattr("bench.train.load_config", broken)
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "TypeError: something internal" in result.output and "--debug" in result.output
    assert "Traceback" not in result.output


def test_exit_codes_are_mapped_in_one_table():
    """Every error class the verbs raise has an entry (or its own code), so none is exit 1 by accident."""
    from bench.ablate import AblationError
    from bench.config import ConfigError
    from bench.console import EXIT_CODES, exit_code
    from bench.generate import GenerateError
    from bench.runs import RunError
    from bench.tinyworld.score import TinyScoreError
    from bench.vbench.score import ScoreError
    from bench.tinyworld.zoo import ZooError
    from bench.train import TrainingError
    from bench.weights import MissingWeightsError
    from t2v_turbo_core.safe_io import WeightsFileError

    assert exit_code(ConfigError("x")) == 2 and exit_code(RunError("x")) == 2
    missing = MissingWeightsError.__new__(MissingWeightsError)  # (its constructor takes the missing items)
    assert exit_code(missing) == 2 and exit_code(ZooError("x")) == 2
    assert exit_code(WeightsFileError("x")) == 2 and exit_code(FileNotFoundError("x")) == 2
    assert exit_code(TrainingError("non-finite loss")) == 1 and exit_code(TrainingError("bad", code=2)) == 2
    assert exit_code(GenerateError("x")) == 2 and exit_code(TinyScoreError("x")) == 2 and exit_code(ScoreError("x", 1)) == 1
    assert exit_code(AblationError("x")) == 1 and exit_code(KeyboardInterrupt()) == 130
    import pickle  # an ablation job's error crosses a process boundary with its code

    assert exit_code(pickle.loads(pickle.dumps(TrainingError("bad", code=2)))) == 2
    assert exit_code(pickle.loads(pickle.dumps(AblationError("x", code=2)))) == 2
    assert exit_code(TypeError("bug")) is None and exit_code(OSError(28, "No space left")) is None
    import importlib

    for name in EXIT_CODES:  # every entry names a class that exists
        module, _, cls = name.rpartition(".")
        assert hasattr(importlib.import_module(module), cls), name


def test_zoo_check_of_another_zoo_keeps_its_contact_sheets_out_of_the_repository(random_zoo, tmp_path, monkeypatch):
    """The sheets default to the checked zoo's output folder, not docs/img (the shipped zoo's figures)."""
    from bench.tinyworld import check as C

    seen = {}

    def first_gate(teacher):
        seen["dirs"] = sorted(p.name for p in tmp_path.iterdir())
        raise RuntimeError("stop after the setup")  # the gates themselves take minutes

    monkeypatch.setattr(C, "vae_gate", first_gate)
    monkeypatch.chdir(tmp_path)  # where the old default, docs/img relative to the cwd, would land
    result = CliRunner().invoke(app, ["zoo", "check", "--zoo-dir", str(random_zoo), "--out", str(tmp_path / "out" / "gates.json")])
    assert result.exit_code == 1 and "stop after the setup" in result.output
    assert seen["dirs"] == ["out"]  # the sheets' folder is gates.json's; no docs/ anywhere


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_a_damaged_mp4_gives_one_clean_line_without_decoder_noise(damage, tmp_path, monkeypatch):
    """FFmpeg's own log lines ("moov atom not found") come from C, past any in-process capture:
    only a fresh process shows whether they reach the terminal."""
    import subprocess
    import sys

    w = World.__new__(World)
    w.tmp = tmp_path
    folder = w.videos(damage=damage)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    res = subprocess.run([sys.executable, "-m", "bench", "score", "tiny", "--videos-dir", str(folder), "-d",
                          "temporal_flickering", "--out", str(tmp_path / "scores")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot decode video"), res.stderr
    assert "moov" not in res.stderr and "video_reader" not in res.stderr
    assert not (tmp_path / "scores").exists()
