"""bench export: diffusers / lvdm / lora exports load with the field's own libraries and give
the harness's student back (tiny random zoo; random-weight ModelScope and VideoCrafter2
checkpoints in their official layouts)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import _register_verbs, app
from bench.config import config_to_dict, load_config
from bench.runs import load_run_student, run_record, student_adapter_path, write_json_atomic
from t2v_turbo_core.lora import save_student
from t2v_turbo_core.models import predict_noise
from t2v_turbo_core.schedule import guidance_scale_embedding

# The miniature real-layout checkpoints (H-real may move these builders to tests/real/miniworld.py).
from tests.real.test_teachers import TINY_VC2, tiny_vc2_state_dict, write_ckpt, write_tiny_modelscope

STRIDED_4 = [999, 759, 519, 279]


def _randomize(student, seed=1, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_" in n or "cond_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def _finished_run(run_dir: Path, cfg, teacher) -> Path:
    """A finished training run whose student has random (non-zero) LoRA and w projection."""
    student = teacher.make_student(cfg.lora_settings())
    _randomize(student)
    save_student(student, student_adapter_path(run_dir))
    write_json_atomic(run_dir / "run.json", run_record("train", config_to_dict(cfg), {"seed": cfg.seed},
                                                       {"status": "finished", "steps": cfg.steps}))
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(random_zoo, tmp_path_factory):
    from bench.tinyworld.zoo import load_tiny_teacher

    cfg = load_config("tiny", [f"weights.tiny_zoo={random_zoo}", "variant=vcm+img+vid", "lora_rank=4", "lora_alpha=8"])
    run = _finished_run(tmp_path_factory.mktemp("tiny") / "run", cfg, load_tiny_teacher(random_zoo))
    # A scored folder, as `bench score` leaves it: the card lists it.
    scores = run / "scores" / "tiny_4step-tiny"
    scores.mkdir(parents=True)
    (scores / "summary.json").write_text(json.dumps({"color": 0.25, "object_class": 0.5}))
    (scores / "bench_scoring.json").write_text(json.dumps({"benchmark": "tiny"}))
    from bench.tinyworld.suite import DIMENSIONS

    complete = run / "scores" / "tiny_8step-tiny"  # all 16 dimensions: the card gives the composites too
    complete.mkdir()
    (complete / "summary.json").write_text(json.dumps({d: 0.5 for d in DIMENSIONS}))
    (complete / "bench_scoring.json").write_text(json.dumps({"benchmark": "tiny"}))
    return run


@pytest.fixture(scope="module")
def ms_run(tmp_path_factory):
    from t2v_turbo_core.teachers import load_modelscope

    ms_dir = write_tiny_modelscope(tmp_path_factory.mktemp("ms") / "text-to-video-ms-1.7b")
    cfg = load_config("ms", [f"weights.modelscope_t2v={ms_dir}", "variant=vcm", "lora_rank=4", "lora_dropout=0.0"])
    return _finished_run(tmp_path_factory.mktemp("msrun") / "run", cfg, load_modelscope(ms_dir)), ms_dir


@pytest.fixture()
def vc2_run(tmp_path, monkeypatch):
    """A VideoCrafter2 run over a tiny model.ckpt in the official layout (the loader is told its tiny config)."""
    import bench.runs
    from t2v_turbo_core.teachers import load_videocrafter2

    ckpt = write_ckpt(tmp_path / "model.ckpt", tiny_vc2_state_dict())
    real = bench.runs.load_teacher

    def load_teacher(cfg, device="cpu"):
        return load_videocrafter2(ckpt, device=device, config=TINY_VC2) if cfg.teacher == "vc2" else real(cfg, device=device)

    monkeypatch.setattr(bench.runs, "load_teacher", load_teacher)
    cfg = load_config("vc2", [f"weights.videocrafter2={ckpt}", "variant=vcm", "lora_rank=4", "lora_dropout=0.0"])
    return _finished_run(tmp_path / "run", cfg, load_videocrafter2(ckpt, config=TINY_VC2)), ckpt


def _export(run, fmt, out, *extra):
    _register_verbs()
    result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def _card_snippet(out: Path, prompt: str, seed: int, geometry: tuple[int, int, int]) -> dict:
    """Run the model card's diffusers code as a user would, with their folder, prompt, seed and size."""
    card = (out / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = re.sub(r"^DIR, prompt, seed = .*$", f"DIR, prompt, seed = {str(out)!r}, {prompt!r}, {seed}", code, flags=re.M)
    code = re.sub(r"^frames, height, width = .*$", "frames, height, width = %d, %d, %d" % geometry, code, flags=re.M)
    scope: dict = {}
    exec(compile(code, "model-card", "exec"), scope)
    return scope


def _card_snippet_alone(out: Path, prompt: str, seed: int, geometry: tuple[int, int, int], tmp_path: Path) -> dict:
    """The card's code in a fresh interpreter that has torch and diffusers but not this repository."""
    import subprocess
    import sys

    card = (out / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = re.sub(r"^DIR, prompt, seed = .*$", f"DIR, prompt, seed = {str(out)!r}, {prompt!r}, {seed}", code, flags=re.M)
    code = re.sub(r"^frames, height, width = .*$", "frames, height, width = %d, %d, %d" % geometry, code, flags=re.M)
    result = tmp_path / "alone.pt"
    code += f"\nimport sys\nassert 'bench' not in sys.modules and 't2v_turbo_core' not in sys.modules\n"
    code += f"torch.save({{'video': video, 'latents': latents}}, {str(result)!r})\n"
    script = tmp_path / "card_code.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(result, weights_only=True)


def _bench_generate(run, prompt, tmp_path, monkeypatch, geometry=None):
    """`bench generate`'s own code path (generate_videos); the frames it hands to the mp4 writer."""
    import bench.video_io
    from bench.generate import generate_videos

    frames = {}
    real = bench.video_io.write_mp4

    def capture(path, video, fps, **kwargs):
        frames[Path(path).name] = video
        return real(path, video, fps, **kwargs)

    monkeypatch.setattr(bench.video_io, "write_mp4", capture)
    bundle, unet, _ = load_run_student(run)
    if geometry:  # the ModelScope geometry (16 x 256 x 256) is too big for a CPU test: a smaller video
        bundle.num_frames, bundle.height, bundle.width = geometry
    summary = generate_videos(bundle, unet, [prompt], tmp_path / "videos", videos_per_prompt=1, seed=123, batch_size=1)
    record = json.loads(summary.manifest.read_text().splitlines()[0])
    assert record["timesteps"] == STRIDED_4
    return frames[record["file"]], record["seed"], bundle, unet


def _harness_latents(bundle, unet, prompt, seed):
    """The student sampler `bench generate` runs, on one video with its recorded seed."""
    from bench.generate import LCM_ORIGIN_STEPS
    from t2v_turbo_core.sampling import consistency_sample

    out = consistency_sample(unet, bundle.text_encoder([prompt]), bundle.latent_shape(1), bundle.schedule, num_steps=4,
                             guidance_scale=7.5, origin_steps=LCM_ORIGIN_STEPS, spacing="strided",
                             generator=[torch.Generator().manual_seed(seed)], guidance_embedding_dim=256)
    assert out.timesteps == STRIDED_4
    return out.latents


def _as_uint8(video):
    from bench.video_io import tensor_to_video

    return tensor_to_video(video[0].permute(1, 0, 2, 3))


def _assert_same_video(ours, theirs):
    """Tolerance: every pixel within one 8-bit level (float rounding of two implementations)."""
    diff = (torch.from_numpy(ours).int() - torch.from_numpy(theirs).int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, (diff.max(), (diff > 0).float().mean())


# --- diffusers ------------------------------------------------------------------------------


def test_tiny_diffusers_export_loads_with_diffusers_and_samples_bench_generates_video(tiny_run, tmp_path, monkeypatch):
    from diffusers import LCMScheduler, TextToVideoSDPipeline

    out = _export(tiny_run, "diffusers", tmp_path / "export")
    index = json.loads((out / "model_index.json").read_text())
    assert index["unet"] == ["bench.tinyworld.unet3d", "TinyWorldUNet3DConditionModel"] and index["scheduler"] == ["diffusers", "LCMScheduler"]
    pipe = TextToVideoSDPipeline.from_pretrained(str(out))
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.unet.config.time_cond_proj_dim == 256
    pipe.scheduler.set_timesteps(timesteps=STRIDED_4)
    assert pipe.scheduler.timesteps.tolist() == STRIDED_4
    # Every weight of the student is in the folder, the position bias and the w projection included.
    _, student, _ = load_run_student(tiny_run)
    assert pipe.unet.state_dict().keys() == student.state_dict().keys()
    for k, v in student.state_dict().items():
        torch.testing.assert_close(pipe.unet.state_dict()[k], v, rtol=0, atol=0)

    prompt = "a red circle"
    frames, seed, bundle, unet = _bench_generate(tiny_run, prompt, tmp_path, monkeypatch)
    scope = _card_snippet(out, prompt, seed, (bundle.num_frames, bundle.height, bundle.width))
    _assert_same_video(frames, _as_uint8(scope["video"]))
    # Latents: within 1e-4 + 1e-5 relative (the same float32 arithmetic in two orders; a wrong w or
    # timestep moves them by ~0.5).
    torch.testing.assert_close(scope["latents"], _harness_latents(bundle, unet, prompt, seed), rtol=1e-5, atol=1e-4)
    facts = json.loads((out / "export.json").read_text())
    assert facts["sampling"]["timesteps"] == STRIDED_4 and facts["sampling"]["guidance_scale"] == 7.5
    card = (out / "README.md").read_text()
    assert "tiny_4step-tiny" in card and "color 0.2500" in card  # the run's scores
    assert "`tiny_8step-tiny` (tiny): Total 50.00%; Quality 50.00%; Semantic 50.00%" in card
    assert "R_img + R_vid" in card and "viclip" in card and "image" in card


def test_no_merge_keeps_the_lora_beside_the_unet_and_gives_the_same_video(tiny_run, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from bench.tinyworld.zoo import load_tiny_teacher

    out = _export(tiny_run, "diffusers", tmp_path / "export", "--no-merge")
    assert {p.name for p in (out / "unet_lora").iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    # unet/ is the teacher (its w projection zero); the student is the adapter.
    unet = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    teacher = load_tiny_teacher(json.loads((tiny_run / "run.json").read_text())["config"]["weights"]["tiny_zoo"]).unet.state_dict()
    assert set(unet) == set(teacher) | {"time_embedding.cond_proj.weight"} and not unet["time_embedding.cond_proj.weight"].any()
    assert all(torch.equal(unet[k], v) for k, v in teacher.items())
    prompt = "a blue square"
    frames, seed, bundle, _ = _bench_generate(tiny_run, prompt, tmp_path, monkeypatch)
    scope = _card_snippet(out, prompt, seed, (bundle.num_frames, bundle.height, bundle.width))
    assert "PeftModel.from_pretrained(pipe.unet" in (out / "README.md").read_text()
    _assert_same_video(frames, _as_uint8(scope["video"]))


@pytest.mark.integration
def test_modelscope_diffusers_export_equals_bench_generate(ms_run, tmp_path, monkeypatch):
    from diffusers import UNet3DConditionModel

    run, _ = ms_run
    out = _export(run, "diffusers", tmp_path / "export")
    assert json.loads((out / "model_index.json").read_text())["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert UNet3DConditionModel.load_config(str(out / "unet"))["time_cond_proj_dim"] == 256
    geometry = (3, 16, 16)
    frames, seed, bundle, unet = _bench_generate(run, "a corgi running on the beach", tmp_path, monkeypatch, geometry)
    alone = _card_snippet_alone(out, "a corgi running on the beach", seed, geometry, tmp_path)  # diffusers alone
    _assert_same_video(frames, _as_uint8(alone["video"]))
    torch.testing.assert_close(alone["latents"], _harness_latents(bundle, unet, "a corgi running on the beach", seed), rtol=1e-5, atol=1e-4)
    scope = _card_snippet(out, "a corgi running on the beach", seed, geometry)
    # ...and without the w projection's input (what TextToVideoSDPipeline.__call__ would do) it is another video.
    pipe, text, lat = scope["pipe"], scope["text"], torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = pipe.unet(lat, 999, encoder_hidden_states=text, timestep_cond=scope["w_emb"]).sample
        b = pipe.unet(lat, 999, encoder_hidden_states=text).sample
    assert (a - b).abs().max() > 1e-4


# --- lvdm -----------------------------------------------------------------------------------


def test_vc2_lvdm_export_has_the_official_keys_plus_time_cond_proj(vc2_run, tmp_path):
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet

    run, ckpt = vc2_run
    out = _export(run, "lvdm", tmp_path / "export")
    source = torch.load(ckpt, weights_only=True)["state_dict"]
    exported = torch.load(out / "model.ckpt", weights_only=True)["state_dict"]
    assert set(exported) == set(source) | {"model.diffusion_model.time_cond_proj.weight"}
    for k, v in source.items():  # VAE, text encoder and schedule buffers are the teacher's, unchanged
        if not k.startswith("model.diffusion_model."):
            assert torch.equal(exported[k], v), k
    unet = torch.load(out / "unet.pt", weights_only=True)
    official = {k[len("model.diffusion_model."):] for k in source if k.startswith("model.diffusion_model.")}
    assert set(unet) == official | {"time_cond_proj.weight"} and tuple(unet["time_cond_proj.weight"].shape) == (32, 256)
    for k, v in unet.items():
        assert torch.equal(exported["model.diffusion_model." + k], v)

    # The merged student comes back from unet.pt (LVDM's w projection name mapped to ours).
    _, student, _ = load_run_student(run)
    ours = VideoCrafter2UNet(TINY_VC2.unet.replace(time_cond_proj_dim=256)).eval()
    ours.load_state_dict({("cond_proj.weight" if k == "time_cond_proj.weight" else k): v for k, v in unet.items()}, strict=True)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(1, 4, 3, 4, 6, generator=g), torch.randn(1, 77, 32, generator=g)
    w = guidance_scale_embedding(torch.tensor([7.5]))
    with torch.no_grad():
        torch.testing.assert_close(predict_noise(ours, z, torch.tensor([759]), c, w, fps=16),
                                   predict_noise(student, z, torch.tensor([759]), c, w, fps=16), rtol=0, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "time_cond_proj" in card and "--unet_dir unet.pt" in card and str(STRIDED_4) in card


# --- lora (peft) ----------------------------------------------------------------------------


def _peft_matches_student(run, base, unet_kwargs, shape, text_shape, out):
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(out)).eval()
    _, student, _ = load_run_student(run, merge=False)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(*shape, generator=g), torch.randn(*text_shape, generator=g)
    w = guidance_scale_embedding(torch.tensor([7.5]))
    with torch.no_grad():
        theirs = predict_noise(model, z, torch.tensor([519]), c, w, **unet_kwargs)
        ours = predict_noise(student.eval(), z, torch.tensor([519]), c, w, **unet_kwargs)
        teacher_like = predict_noise(model.get_base_model(), z, torch.tensor([519]), c, None, **unet_kwargs)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)
    assert (theirs - teacher_like).abs().max() > 1e-4  # the adapter changed something


def test_lora_export_is_a_peft_adapter_for_the_teacher(tiny_run, ms_run, vc2_run, random_zoo, tmp_path):
    from diffusers import UNet3DConditionModel

    from bench.tinyworld.models import add_spatial_position_bias
    from bench.tinyworld.zoo import load_tiny_teacher

    # Tiny: the teacher's UNet rebuilt with the w projection's input, teacher weights loaded.
    out = _export(tiny_run, "lora", tmp_path / "tiny")
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["modules_to_save"] == ["time_embedding.cond_proj"]
    teacher = load_tiny_teacher(random_zoo).unet
    config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}  # `_use_default_values` would drop the 256
    base = add_spatial_position_bias(UNet3DConditionModel.from_config({**config, "time_cond_proj_dim": 256}))
    base.load_state_dict(teacher.state_dict(), strict=False)
    _peft_matches_student(tiny_run, base, {}, (1, 4, 2, 8, 8), (1, 32, 64), out)

    # ModelScope: the card's one-liner for the base model.
    run, ms_dir = ms_run
    out = _export(run, "lora", tmp_path / "ms")
    base = UNet3DConditionModel.from_pretrained(str(ms_dir / "unet"), time_cond_proj_dim=256, low_cpu_mem_usage=False)
    assert 'time_cond_proj_dim=256, low_cpu_mem_usage=False' in (out / "README.md").read_text()
    _peft_matches_student(run, base, {}, (1, 4, 2, 4, 4), (1, 77, 32), out)

    # VideoCrafter2: the harness's LVDM UNet with the w projection's input.
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet
    from t2v_turbo_core.teachers import load_videocrafter2

    run, ckpt = vc2_run
    out = _export(run, "lora", tmp_path / "vc2")
    teacher = load_videocrafter2(ckpt, config=TINY_VC2).unet
    base = VideoCrafter2UNet(TINY_VC2.unet.replace(time_cond_proj_dim=256)).eval()
    base.load_state_dict(teacher.state_dict(), strict=False)
    _peft_matches_student(run, base, {"fps": 16}, (1, 4, 2, 4, 6), (1, 77, 32), out)


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_exits_2_and_writes_nothing(tiny_run, tmp_path, monkeypatch):
    _register_verbs()
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["export", *map(str, args)])
        return result.exit_code, result.output

    out = tmp_path / "out"
    code, text = run(tiny_run, "--format", "onnx", "--out", out)
    assert code == 2 and "unknown format 'onnx'" in text
    code, text = run(tiny_run, "--format", "lvdm", "--out", out)
    assert code == 2 and "does not fit the 'tiny' teacher" in text
    code, text = run(tmp_path / "nowhere", "--format", "lora", "--out", out)
    assert code == 2 and "not a run directory" in text
    code, text = run(tiny_run, "--format", "lora", "--out", out, "--no-merge")
    assert code == 2 and "--no-merge" in text
    if not torch.cuda.is_available():
        code, text = run(tiny_run, "--format", "lora", "--out", out, "--device", "cuda")
        assert code == 2 and "no CUDA device" in text
    assert not out.exists()

    full = tmp_path / "full"
    (full / "keep.txt").parent.mkdir()
    (full / "keep.txt").write_text("mine")
    code, text = run(tiny_run, "--format", "lora", "--out", full)
    assert code == 2 and "not an empty folder" in text and (full / "keep.txt").read_text() == "mine"

    unfinished = tmp_path / "unfinished"
    record = json.loads((tiny_run / "run.json").read_text())
    write_json_atomic(unfinished / "run.json", {**record, "status": "running"})
    code, text = run(unfinished, "--format", "diffusers", "--out", out)
    assert code == 2 and "training is not finished" in text and not out.exists()

    # A failure halfway through writing leaves neither the folder nor its temporary copy.
    import bench.export

    def broken(*args, **kwargs):
        raise FileNotFoundError("disk went away")

    monkeypatch.setattr(bench.export, "write_peft_adapter", broken)
    code, text = run(tiny_run, "--format", "lora", "--out", out)
    assert code == 2 and "disk went away" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "unfinished"]

    # An existing empty folder is fine.
    monkeypatch.undo()
    out.mkdir()
    code, text = run(tiny_run, "--format", "lora", "--out", out)
    assert code == 0, text
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.skipif(not os.environ.get("T2V_TURBO_SRC"),
                    reason="set T2V_TURBO_SRC to a Ji4chenLi/t2v-turbo checkout (needs einops)")
def test_lvdm_unet_pt_loads_strictly_into_the_released_unetmodel(tmp_path, monkeypatch):
    """The released code's own UNetModel (time_cond_proj_dim=256) takes unet.pt with
    `load_state_dict(strict=True)`, as its app.py does, and computes the harness's student."""
    import dataclasses
    import os
    import sys

    import bench.runs
    from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet
    from t2v_turbo_core.teachers import load_videocrafter2

    pytest.importorskip("einops")
    sys.path.insert(0, os.environ["T2V_TURBO_SRC"])
    try:
        from lvdm.modules.networks.openaimodel3d import UNetModel
    finally:
        sys.path.pop(0)
    # LVDM hard-codes 8 init_attn heads and 32-group norms: a tiny config it can build.
    unet_cfg = TINY_VC2.unet.replace(init_attn_heads=8, norm_num_groups=32)
    config = dataclasses.replace(TINY_VC2, unet=unet_cfg)

    torch.manual_seed(0)
    state = {k: v for k, v in tiny_vc2_state_dict().items() if not k.startswith("model.diffusion_model.")}
    state.update({f"model.diffusion_model.{k}": torch.randn_like(v) * 0.05 for k, v in VideoCrafter2UNet(unet_cfg).state_dict().items()})
    ckpt = write_ckpt(tmp_path / "model.ckpt", state)
    monkeypatch.setattr(bench.runs, "load_teacher", lambda cfg, device="cpu": load_videocrafter2(ckpt, device=device, config=config))
    cfg = load_config("vc2", [f"weights.videocrafter2={ckpt}", "variant=vcm", "lora_rank=4", "lora_dropout=0.0"])
    run = _finished_run(tmp_path / "run", cfg, load_videocrafter2(ckpt, config=config))
    out = _export(run, "lvdm", tmp_path / "export")

    c = unet_cfg
    ref = UNetModel(
        in_channels=c.in_channels, out_channels=c.out_channels, model_channels=c.model_channels,
        attention_resolutions=list(c.attention_resolutions), num_res_blocks=c.num_res_blocks,
        channel_mult=list(c.channel_mult), num_head_channels=c.num_head_channels, context_dim=c.context_dim,
        use_linear=True, use_checkpoint=False, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
        use_relative_position=False, use_causal_attention=False, temporal_length=16, addition_attention=True,
        fps_cond=True, time_cond_proj_dim=256,
    ).eval()  # fmt: skip
    ref.load_state_dict(torch.load(out / "unet.pt", map_location="cpu"), strict=True)
    _, student, _ = load_run_student(run)
    g = torch.Generator().manual_seed(0)
    z, ctx = torch.randn(1, 4, 3, 4, 6, generator=g), torch.randn(1, 77, 32, generator=g)
    w = guidance_scale_embedding(torch.tensor([7.5]))
    with torch.no_grad():
        torch.testing.assert_close(ref(z, torch.tensor([759]), context=ctx, timestep_cond=w, fps=16),
                                   predict_noise(student, z, torch.tensor([759]), ctx, w, fps=16), rtol=1e-4, atol=1e-5)
