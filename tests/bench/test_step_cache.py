"""The training steps the ablation's variants share (bench.step_cache): same training, bit for bit."""

import json

import torch
from safetensors.torch import load_file

import t2v_turbo_core.distillation as distillation
from bench.config import load_config
from bench.step_cache import cache_key
from bench.train import train


def _cfg(zoo, *extra):
    return load_config("tiny", [f"weights.tiny_zoo={zoo}", "batch_size=2", "lora_rank=4", "lora_alpha=4", "steps=3",
                                "log_every=1", "checkpoint_every=10", *extra])


def _losses(run):
    rows = (run / "train_log.csv").read_text().strip().splitlines()
    return [row.split(",")[2:] for row in rows[1:]]  # every column but the step's seconds


def _count_teacher_passes(monkeypatch):
    calls = []
    original = distillation.ConsistencyDistiller._teacher_eps

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(distillation.ConsistencyDistiller, "_teacher_eps", counted)
    return calls


def test_a_variant_trained_from_shared_steps_equals_one_trained_alone(random_zoo, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    train(_cfg(random_zoo, "variant=vcm"), tmp_path / "alone", device="cpu", tracker="none")
    # Another variant (both rewards) reaches the steps first: it computes and writes them.
    train(_cfg(random_zoo, "variant=vcm+img+vid", "rm_vid=viclip"), tmp_path / "first", device="cpu", tracker="none",
          shared_steps=shared)
    assert len(list(shared.glob("*/step-*.pt"))) == 3
    assert json.loads((tmp_path / "first" / "run.json").read_text())["shared_steps_read"] == 0
    passes = _count_teacher_passes(monkeypatch)
    train(_cfg(random_zoo, "variant=vcm"), tmp_path / "shared-run", device="cpu", tracker="none", shared_steps=shared)
    assert json.loads((tmp_path / "shared-run" / "run.json").read_text())["shared_steps_read"] == 3
    assert passes == []  # the teacher's pass of every step was read, not recomputed
    assert _losses(tmp_path / "shared-run") == _losses(tmp_path / "alone")
    for name in ("student/adapter.safetensors", "checkpoints/step-000003/ema.safetensors"):
        a, b = load_file(str(tmp_path / "alone" / name)), load_file(str(tmp_path / "shared-run" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unreadable_or_foreign_record_is_recomputed(random_zoo, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    train(_cfg(random_zoo, "variant=vcm", "steps=2"), tmp_path / "alone", device="cpu", tracker="none", shared_steps=shared)
    (step0,) = shared.glob("*/step-000000.pt")
    step0.write_bytes(b"not a torch file")  # e.g. a disk error; a kill never leaves one (atomic writes)
    rec = torch.load(shared.glob("*/step-000001.pt").__next__(), weights_only=True)
    rec["z_start"] = rec["z_start"] + 1.0  # a record whose draws are not this step's
    torch.save(rec, next(shared.glob("*/step-000001.pt")))
    passes = _count_teacher_passes(monkeypatch)
    train(_cfg(random_zoo, "variant=vcm", "steps=2"), tmp_path / "again", device="cpu", tracker="none", shared_steps=shared)
    assert len(passes) == 2  # both steps ran the teacher themselves
    assert _losses(tmp_path / "again") == _losses(tmp_path / "alone")


def test_the_key_follows_what_the_records_depend_on(random_zoo):
    from bench.runs import load_teacher

    cfg = _cfg(random_zoo)
    teacher = load_teacher(cfg)
    uncond = teacher.text_encoder([""])
    key = cache_key(cfg, teacher, uncond, 0, 1, "cpu")
    assert key == cache_key(_cfg(random_zoo, "variant=vcm+img", "lr=1e-4", "beta_img=3"), teacher, uncond, 0, 1, "cpu")
    assert key != cache_key(_cfg(random_zoo, "seed=1"), teacher, uncond, 0, 1, "cpu")
    assert key != cache_key(_cfg(random_zoo, "batch_size=3"), teacher, uncond, 0, 1, "cpu")
    assert key != cache_key(cfg, teacher, uncond, 1, 2, "cpu")
    with torch.no_grad():
        next(teacher.unet.parameters()).add_(1e-3)  # other teacher weights
    assert key != cache_key(cfg, teacher, uncond, 0, 1, "cpu")
