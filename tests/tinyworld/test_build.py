"""The zoo builder: training loop (learning-rate schedule, exact resume) and the teacher stage."""

import math

import pytest
import torch
from torch import nn

from bench.tinyworld.build import Context, StageError, lr_factor, train_loop


def test_lr_schedule_warms_up_holds_then_anneals_to_zero():
    total, warmup, decay_from = 100, 10, 60
    f = [lr_factor(s, total, warmup, decay_from) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in f[9:61])
    assert f[80] == pytest.approx(0.5)  # half-way through the cosine
    assert all(a >= b for a, b in zip(f[60:], f[61:]))
    assert f[-1] < 0.01 and f[-1] > 0
    assert lr_factor(50, total, warmup) == 1.0  # no decay unless asked


def _run(tmp_path, total, name="toy"):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    x = torch.randn(32, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def step_fn(step):
        i = torch.randint(0, 32, (8,))
        return {"loss": ((model(x[i]).squeeze(-1) - y[i]) ** 2).mean()}

    ctx = Context(zoo_dir=tmp_path, work_dir=tmp_path / "work", log=lambda _m: None)
    info = train_loop(ctx, name, {"m": model}, opt, step_fn, total, lr=0.1, warmup=2, ckpt_every=3,
                      ema_decay=0.9, decay_from=6)
    return model, info


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight, _ = _run(tmp_path / "a", 12)
    _run(tmp_path / "b", 6)  # "interrupted" at step 6 (a checkpoint), then resumed to 12
    resumed, info = _run(tmp_path / "b", 12)
    assert info["steps"] == 12
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step_fn(step):
        loss = model(torch.ones(1, 2)).sum()
        return {"loss": loss * (math.nan if step == 4 else 1.0)}

    ctx = Context(zoo_dir=tmp_path, work_dir=tmp_path / "work", log=lambda _m: None)
    with pytest.raises(StageError, match="non-finite loss at step 4"):
        train_loop(ctx, "nan", {"m": model}, opt, step_fn, 10, lr=0.1, warmup=1, ckpt_every=3)
    state = torch.load(tmp_path / "work" / "nan" / "state.pt", weights_only=True)
    assert state["step"] == 3


def test_teacher_schedule_restarts_for_the_shape_phase():
    from bench.tinyworld.build import SHAPE_LR, SHAPE_STEPS, TEACHER_LR, TEACHER_STEPS, teacher_lr

    assert teacher_lr(TEACHER_STEPS // 2) == pytest.approx(TEACHER_LR)
    assert teacher_lr(TEACHER_STEPS - 1) < 0.01 * TEACHER_LR  # phase 1 anneals to ~0
    # Phase 2 warms up again to its own, lower peak and anneals to ~0.
    assert teacher_lr(TEACHER_STEPS) < 0.02 * SHAPE_LR
    peak = max(teacher_lr(s) for s in range(TEACHER_STEPS, TEACHER_STEPS + SHAPE_STEPS))
    assert peak == pytest.approx(SHAPE_LR, rel=0.01) and SHAPE_LR < TEACHER_LR
    assert teacher_lr(TEACHER_STEPS + SHAPE_STEPS - 1) < 0.01 * SHAPE_LR


def test_object_weight_follows_the_area_in_the_latent_layout():
    from bench.tinyworld.build import object_weight

    area = torch.zeros(2, 3, 8, 8)
    area[0, 1, :4, :4] = 1.0  # one full latent cell (factor 4) in clip 0, frame 1
    area[1, 2, 4:6, 4:8] = 1.0  # half of a cell in clip 1, frame 2
    w = object_weight(area, 4, 4.0)
    assert w.shape == (2, 1, 3, 2, 2)
    assert w[0, 0, 1, 0, 0] == 5.0 and w[1, 0, 2, 1, 1] == 3.0
    assert (w == 1.0).sum() == w.numel() - 2


def test_contrast_negative_changes_one_shape_or_flips_the_relation():
    import numpy as np

    from bench.tinyworld.build import contrast_negative
    from bench.tinyworld.world import OPPOSITE_RELATION, SceneSpec, caption, sample_scene

    rng = np.random.default_rng(0)
    assert contrast_negative(rng, SceneSpec("forest")) is None
    flips = swaps = 0
    for _ in range(300):
        spec = sample_scene(rng)
        neg = contrast_negative(rng, spec)
        if not spec.objects:
            assert neg is None
            continue
        assert caption(neg) != caption(spec)
        changed = [(a.shape, b.shape) for a, b in zip(spec.objects, neg.objects) if a != b]
        if neg.relation != spec.relation:
            flips += 1
            assert neg.relation == OPPOSITE_RELATION[spec.relation] and not changed
        else:
            swaps += 1
            assert len(changed) == 1 and changed[0][0] != changed[0][1]
            # Never a negative that names the same shape twice, or a spinning circle.
            assert len({o.shape for o in neg.objects}) == len(neg.objects)
            assert not any(o.shape == "circle" and o.action == "spinning" for o in neg.objects)
    assert flips > 10 and swaps > 100


def test_contrast_loss_is_a_hinge_relative_to_the_true_captions_error():
    from bench.tinyworld.build import contrast_loss

    e_pos = torch.tensor([1.0, 0.1, 0.1], requires_grad=True)
    e_neg = torch.tensor([1.0, 0.2, 0.1], requires_grad=True)
    loss = contrast_loss(e_pos, e_neg, margin=0.05)
    # Clip 0 ties (0.05 short of its margin), clip 1 is past it, clip 2 ties at a tenth the scale.
    assert loss.item() == pytest.approx((0.05 + 0.0 + 0.005) / 3)
    loss.backward()
    assert e_pos.grad.tolist() == pytest.approx([1 / 3, 0.0, 1 / 3])  # the margin is detached
    assert e_neg.grad.tolist() == pytest.approx([-1 / 3, 0.0, -1 / 3])
    # A batch with no pairs adds nothing (an empty mean would be NaN and stop the build).
    assert contrast_loss(torch.zeros(0), torch.zeros(0)).item() == 0.0


def test_graft_adds_8x8_cross_attention_without_changing_the_teacher():
    import torch

    from bench.tinyworld import models as M

    torch.manual_seed(0)
    base = M.make_teacher_unet(cross_attention_at_8x8=False).eval()
    grown = M.graft_cross_attention_8x8(base).eval()
    # The graft keeps every base weight and adds spatial + temporal transformers at 8x8 ...
    new = set(grown.state_dict()) - set(base.state_dict())
    assert new and all(k.startswith(M.GRAFTED_BLOCKS) for k in new)
    assert {"down_blocks.0.attentions.0.proj_out.weight", "up_blocks.2.temp_attentions.1.proj_out.weight"} <= new
    assert type(grown.down_blocks[0]).__name__ == "CrossAttnDownBlock3D"
    assert grown.config.down_block_types == M.teacher_unet_config()["down_block_types"]
    x, t, c = torch.randn(2, 4, 8, 8, 8), torch.tensor([900, 20]), torch.randn(2, 16, 64)
    with torch.no_grad():
        # ... whose zeroed output projections make the grown UNet the same function,
        assert torch.equal(grown(x, t, encoder_hidden_states=c).sample, base(x, t, encoder_hidden_states=c).sample)
    # and the zeroed projections still get gradients, so training can open the new branches.
    grown(x, t, encoder_hidden_states=c).sample.square().mean().backward()
    assert grown.down_blocks[0].attentions[0].proj_out.weight.grad.abs().sum() > 0
    assert grown.up_blocks[2].attentions[1].proj_out.weight.grad.abs().sum() > 0


def test_graft_refuses_a_unet_of_another_shape():
    from diffusers import UNet3DConditionModel

    from bench.tinyworld import models as M

    other = UNet3DConditionModel(**{**M.teacher_unet_config(False), "block_out_channels": (32, 64, 96)})
    with pytest.raises((RuntimeError, ValueError)):
        M.graft_cross_attention_8x8(other)


def _teacher_data(ctx, captions=None):
    from bench.tinyworld.build import SHARD, _shard_specs
    from bench.tinyworld.world import FRAMES, caption

    out = ctx.work_dir / "teacher_data"
    out.mkdir(parents=True)
    caps = captions or [caption(sp) for sp in _shard_specs(ctx, 0)]
    lat = torch.randn(SHARD, 4, FRAMES, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    torch.save({"latents": lat, "captions": caps}, out / "shard_000.pt")


def test_teacher_stage_runs_every_phase_and_exports_the_grafted_unet(tmp_path):
    """Two plain steps, then the graft and two object-weighted steps, then two contrast steps:
    the shipped layout (grown UNet, all four phases in zoo.json) comes out and loads."""
    from bench.tinyworld import models as M
    from bench.tinyworld.build import read_manifest, stage_teacher
    from bench.tinyworld.testing import make_random_zoo
    from bench.tinyworld.zoo import load_tiny_teacher

    zoo = make_random_zoo(tmp_path / "zoo")
    ctx = Context(zoo_dir=zoo, work_dir=tmp_path / "work", log=lambda _m: None)
    _teacher_data(ctx)
    stage_teacher(ctx, steps=2, graft_steps=2, contrast_steps=2)
    entry = read_manifest(zoo)["stages"]["teacher"]
    assert entry["steps"] == 6 and set(entry["config"]["phases"]) == {"plain", "shape", "graft", "contrast"}
    assert set(entry["final"]) >= {"hinge", "gap", "won"}
    assert entry["config"]["unet"]["down_block_types"][0] == "CrossAttnDownBlock3D"
    assert torch.load(ctx.work_dir / "teacher_graft" / "state.pt", weights_only=True)["step"] == 2
    assert torch.load(ctx.work_dir / "teacher_contrast" / "state.pt", weights_only=True)["step"] == 2
    teacher = load_tiny_teacher(zoo)
    # The grafted blocks were trained (no longer the zero init) and were exported.
    assert teacher.unet.down_blocks[0].attentions[0].proj_out.weight.abs().sum() > 0


def test_teacher_graft_phase_refuses_data_whose_captions_no_longer_match_the_world(tmp_path):
    from bench.tinyworld.build import SHARD, stage_teacher
    from bench.tinyworld.testing import make_random_zoo

    zoo = make_random_zoo(tmp_path / "zoo")
    ctx = Context(zoo_dir=zoo, work_dir=tmp_path / "work", log=lambda _m: None)
    _teacher_data(ctx, captions=["a red circle"] * SHARD)
    with pytest.raises(StageError, match="no longer matches its seed"):
        stage_teacher(ctx, steps=0, graft_steps=2)
