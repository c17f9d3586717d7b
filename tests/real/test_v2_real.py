"""T2V-Turbo-v2 on the miniature real-layout world (random-weight VideoCrafter2 `model.ckpt`,
HPSv2.1 and InternVideo2 checkpoints in their official layouts, a WebVid CSV with a corrupt
and a too-short file): `bench preprocess --config vc2_v2` from the caption file, then 2
training steps from the cache."""

from __future__ import annotations

import json

import torch
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.config import CONFIG_DIR
from t2v_turbo_core.reward_models import build_hps_model
from tests.real.miniworld import SMOKE_SETTINGS, TINY_HPS, build_miniworld, randomise


def test_vc2_v2_preprocess_then_train(tmp_path):
    world = build_miniworld(tmp_path / "miniworld")
    cache, run = tmp_path / "cache", tmp_path / "run"
    cfg = yaml.safe_load((CONFIG_DIR / "vc2_v2.yaml").read_text())
    cfg.update(SMOKE_SETTINGS)
    # k = 50 (N = 20) keeps a motion record's DDIM inversion to <= 20 steps; batch 2.
    cfg.update({"weights": world.weights("vc2"), "data": {**world.data(), "fps": 8}, "skip": 50, "batch_size": 2,
                "grad_checkpointing": False, "video_reward_frames": 4})
    cfg["v2"].update({"cache": str(cache), "records_per_shard": 2, "sample_steps": 4})
    # The released image reward mix: HPSv2.1 + CLIP-H, CLIP-H from the laion repository's file layout.
    clip_h = tmp_path / "CLIP-ViT-H-14-laion2B-s32B-b79K" / "open_clip_pytorch_model.bin"
    clip_h.parent.mkdir()
    torch.save(randomise(build_hps_model(TINY_HPS), seed=9).state_dict(), clip_h)
    cfg["weights"]["clip_h"] = str(clip_h)
    path = tmp_path / "vc2_v2.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    _register_verbs()
    runner = CliRunner()
    result = runner.invoke(app, ["preprocess", "--config", str(path), "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    manifest = json.loads((cache / "cache.json").read_text())
    assert manifest["status"] == "complete" and manifest["identity"]["teacher"] == "vc2"
    kept = []
    for shard in sorted(cache.glob("shard-*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            kept += json.loads(f.metadata()["videos"])
            if "eps_cond" in f.keys():  # a shard whose videos were all unusable holds none
                assert f.get_tensor("eps_cond").dtype == torch.float16  # record_dtype float16, as the released pickles
    n = sum(1 for _ in open(world.annotations)) - 1
    # The corrupt and the too-short video are skipped (and named), the rest kept.
    assert len(kept) == manifest["records"] == n - 2 and len(manifest["skipped_videos"]) == 2
    result = runner.invoke(app, ["train", "--config", str(path), "--run-dir", str(run), "--device", "cpu", "--tracker", "none"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["recipe"]["v2"]["motion_cond_init"] == "released"
    assert record["recipe"]["v2"]["clip_h_weight"] == 1.0
    # Without the CLIP-H file: a clear error naming where it was looked for, and no run.
    missing = path.with_name("missing.yaml")
    missing.write_text(path.read_text().replace(str(clip_h), str(tmp_path / "nope.bin")))
    result = runner.invoke(app, ["train", "--config", str(missing), "--run-dir", str(tmp_path / "r2"), "--device", "cpu",
                                 "--tracker", "none"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "CLIP-H weights not found" in result.output and not (tmp_path / "r2").exists()
    rows = (run / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
