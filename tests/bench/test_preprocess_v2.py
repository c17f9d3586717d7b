"""T2V-Turbo-v2 through the CLI in the tiny world: `bench preprocess` (resumable, sharded,
atomic shards, settings recorded) -> `bench train --config tiny_v2` from the cache ->
`bench generate` at 16 steps with the motion-condition schedule -> `bench score tiny`."""

import json

from safetensors import safe_open
from tests.helpers.cli import invoke_bench
from tests.helpers.tinyworld import SMALL_V2 as SMALL


def _shard_bytes(cache):
    return {p.name: p.read_bytes() for p in sorted(cache.glob("shard-*.safetensors"))}


def _shard_contents(cache):
    # Content, not bytes: safetensors writes its metadata map in no fixed order.
    out = {}
    for p in sorted(cache.glob("shard-*.safetensors")):
        with safe_open(str(p), "pt") as f:
            out[p.name] = (f.metadata(), {k: f.get_tensor(k).tolist() for k in f.keys()})
    return out


def test_preprocess_train_generate_score(random_zoo, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    zoo = f"weights.tiny_zoo={random_zoo}"
    result = invoke_bench(["preprocess", "--config", "tiny_v2", "--out", str(cache), "--device", "cpu", zoo, *SMALL])
    assert result.exit_code == 0, result.output
    manifest = json.loads((cache / "cache.json").read_text())
    assert manifest["kind"] == "preprocess" and manifest["status"] == "complete" and manifest["shards"] == 2
    assert manifest["identity"]["skip"] == 50 and manifest["identity"]["videos"] == 3 and manifest["git"]["commit"]
    first, contents = _shard_bytes(cache), _shard_contents(cache)
    assert list(first) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    with safe_open(str(cache / "shard-00000.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["videos"]) == [0, 1] and len(json.loads(f.metadata()["captions"])) == 2
        # Data decoupling: every record has a short caption, the long one without its scene,
        # style and camera clauses (world.short_caption), which the rewards are scored against.
        longs, shorts = json.loads(f.metadata()["captions"]), json.loads(f.metadata()["short_captions"])
        assert all(s and long.startswith(s) for long, s in zip(longs, shorts))
        assert f.get_tensor("eps_cond").shape == f.get_tensor("noisy_latent").shape
    # A rerun builds nothing; a lost shard is rebuilt, identical (every draw is per video).
    result = invoke_bench(["preprocess", "--config", "tiny_v2", "--out", str(cache), "--device", "cpu", zoo, *SMALL])
    assert result.exit_code == 0 and "0 shard(s) built" in result.output
    (cache / "shard-00001.safetensors").unlink()
    (cache / "shard-00000.safetensors").write_bytes(first["shard-00000.safetensors"][:100])  # a torn file
    result = invoke_bench(["preprocess", "--config", "tiny_v2", "--out", str(cache), "--device", "cpu", zoo, *SMALL])
    assert result.exit_code == 0 and "2 shard(s) built" in result.output
    assert _shard_contents(cache) == contents

    result = invoke_bench(["train", "--config", "tiny_v2", "--run-dir", str(run), "--device", "cpu", "--tracker", "none", zoo,
                              *SMALL, f"v2.cache={cache}", "steps=2", "batch_size=2", "checkpoint_every=2"])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["recipe"]["v2"]["motion_gs"] == 0.05
    assert record["recipe"]["v2"]["motion_cond"] is True
    rows = (run / "train_log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("2,")

    result = invoke_bench(["generate", "--run", str(run), "--suite", "tiny", "--limit", "1", "--videos-per-prompt", "1",
                              "--seed", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = run / "videos" / "tiny_16step"
    gen = json.loads((out / "generation.json").read_text())
    assert "16 NFE per video" in result.output.replace("\n", " ")
    cond = gen["v2_motion_condition"]
    assert cond["timesteps"] == [999 - 50 * i for i in range(16)]  # 16 of the 20-point origin grid
    assert cond["values"] == [0.05 if t >= 500 else 0.0 for t in cond["timesteps"]]
    assert len(list(out.glob("*.mp4"))) == 1

    result = invoke_bench(["score", "tiny", "--run", str(run), "-d", "dynamic_degree", "--zoo", str(random_zoo)])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "scores" / "tiny_16step-tiny" / "summary.json").read_text())
    assert 0.0 <= summary["dynamic_degree"] <= 1.0


def test_sharded_build_and_bad_input(random_zoo, tmp_path):
    cache = tmp_path / "cache"
    zoo = f"weights.tiny_zoo={random_zoo}"
    base = ["preprocess", "--config", "tiny_v2", "--out", str(cache), "--device", "cpu", zoo, "skip=50", "v2.records_per_shard=1",
            "v2.videos=2", "v2.tau=0"]  # no motion records: two cheap shards
    result = invoke_bench([*base, "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in cache.glob("shard-*")] == ["shard-00001.safetensors"]
    assert json.loads((cache / "cache.json").read_text())["status"] == "building"
    # Training refuses an incomplete cache, naming what is missing, and writes no run.
    result = invoke_bench(["train", "--config", "tiny_v2", "--run-dir", str(tmp_path / "r"), "--device", "cpu", zoo, "skip=50",
                              "v2.records_per_shard=1", "v2.videos=2", "v2.tau=0", f"v2.cache={cache}", "steps=1"])
    assert result.exit_code == 2 and "shard-00000" in result.output and not (tmp_path / "r").exists()
    result = invoke_bench([*base, "--shard", "0/2"])
    assert result.exit_code == 0 and "cache complete" in result.output.replace("\n", " ")
    assert json.loads((cache / "cache.json").read_text())["status"] == "complete"
    # Other settings into the same folder are refused, nothing rewritten.
    before = _shard_bytes(cache)
    result = invoke_bench([*base, "v2.videos=3"])
    assert result.exit_code == 2 and "other settings" in result.output and "videos" in result.output
    assert _shard_bytes(cache) == before
    for bad, words in ((["--shard", "2/2"], "shard"), (["v2.tau=2"], "tau"), (["v2.nonsense=1"], "unknown v2 key"),
                       (["v2.motion_cond=maybe"], "motion_cond")):
        result = invoke_bench([*base, *bad])
        assert result.exit_code == 2 and words in result.output, result.output
    result = invoke_bench(["preprocess", "--config", "tiny", "--out", str(tmp_path / "c2"), zoo])
    assert result.exit_code == 2 and "no v2 block" in result.output and not (tmp_path / "c2").exists()
    assert "preprocess" in invoke_bench(["--help"]).output


def test_short_captions_drop_scene_style_and_camera():
    """The tiny world's short form (T2V-Turbo-v2's data decoupling): what the subject is and does."""
    import numpy as np

    from bench.tinyworld.world import ObjectSpec, SceneSpec, caption, short_caption, training_scene

    spec = SceneSpec(scene="desert", objects=(ObjectSpec("circle", "red", action="moving left"),), style="striped",
                     camera="pan right")
    assert caption(spec) == "a red circle moving left in a desert, in striped style, camera pans right"
    assert short_caption(spec) == "a red circle moving left"
    two = SceneSpec(scene="night", objects=(ObjectSpec("star", "blue"), ObjectSpec("cross", "red")), relation="above")
    assert short_caption(two) == "a blue star above a red cross"
    assert short_caption(SceneSpec(scene="forest", camera="zoom in")) == "a forest"
    # On the training distribution most long and short forms differ (161 of 200 draws).
    rng = np.random.default_rng(0)
    specs = [training_scene(rng, set()) for _ in range(200)]
    differ = sum(caption(s) != short_caption(s) for s in specs)
    assert 120 < differ < 200 and all(caption(s).startswith(short_caption(s)) for s in specs)
