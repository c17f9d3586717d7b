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


def test_a_finished_stage_run_again_reports_the_final_losses_of_its_log(tmp_path):
    _, first = _run(tmp_path, 12)
    _, again = _run(tmp_path, 12)  # nothing left to train: a re-export of a finished stage
    assert first["final"] and again["final"] == pytest.approx(first["final"], abs=1e-5)


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


def test_a_param_groups_lr_scale_multiplies_the_schedule(tmp_path):
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr_scale": 40.0}], lr=0.0)
    seen = []

    def step_fn(step):
        seen.append([g["lr"] for g in opt.param_groups])
        return {"loss": (a(torch.ones(1, 2)) + b(torch.ones(1, 2))).sum()}

    ctx = Context(zoo_dir=tmp_path, work_dir=tmp_path / "work", log=lambda _m: None)
    train_loop(ctx, "scaled", {"a": a, "b": b}, opt, step_fn, 3, lr=1e-3, warmup=1)
    assert seen == [[pytest.approx(1e-3), pytest.approx(4e-2)]] * 3


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


def test_object_token_positions_point_at_each_objects_colour_and_shape_tokens():
    import numpy as np

    from bench.tinyworld import models as M
    from bench.tinyworld.build import DEFAULT_ZOO_DIR, object_token_positions
    from bench.tinyworld.world import caption, sample_scene

    tok = M.load_clip_tokenizer(DEFAULT_ZOO_DIR)
    rng = np.random.default_rng(3)
    seen_pairs = 0
    for _ in range(300):
        spec = sample_scene(rng)
        ids = tok(caption(spec)).input_ids
        positions = object_token_positions(tok, spec)
        assert len(positions) == len(spec.objects)
        for o, where in zip(spec.objects, positions):
            words = [w.removesuffix("</w>") for w in tok.convert_ids_to_tokens([ids[j] for j in where])]
            assert words == ([o.color] if o.color_named else []) + [o.shape], caption(spec)
        seen_pairs += len(spec.objects) == 2
    assert seen_pairs > 20


def test_grounding_loss_is_zero_inside_the_mask_and_pulls_attention_into_it():
    from bench.tinyworld.build import grounding_loss

    frames, side, tokens = 2, 4, 5
    area = torch.zeros(1, frames, 32, 32)
    area[..., :16, :16] = 1.0  # the object covers the top-left quarter: cells (0..1, 0..1) at 4x4
    inside = torch.zeros(side, side)
    inside[:2, :2] = 1
    clip, token = torch.tensor([0]), torch.tensor([3])
    # Token 3 draws all its attention from the object's cells: nothing to pay.
    probs = torch.full((frames, side * side, tokens), 0.1)
    probs[:, :, 3] = inside.flatten() * 0.5
    assert grounding_loss([(side, probs)], frames, clip, token, area).item() == pytest.approx(0.0)
    # Uniform attention: a quarter of it inside, (1 - 1/4)^2 to pay, at every level.
    logits = torch.zeros(frames, side * side, tokens, requires_grad=True)
    loss = grounding_loss([(side, logits.softmax(-1)), (2, torch.full((frames, 4, tokens), 0.2))], frames, clip, token, area)
    assert loss.item() == pytest.approx(0.75**2)
    loss.backward()
    # Gradient descent raises token 3's logits on the object's cells, and lowers them elsewhere.
    step = -logits.grad[0, :, 3].reshape(side, side)
    assert (step[:2, :2] > 0).all() and (step[2:, :] < 0).all()
    # No entries (every caption dropped): zero, not NaN.
    empty = torch.zeros(0, dtype=torch.long)
    assert grounding_loss([(side, probs)], frames, empty, empty, area[:0]).item() == 0.0


def test_layout_weight_turns_the_eps_error_into_the_x0_error_and_caps_it():
    from bench.tinyworld.build import LAYOUT_X0_CAP, layout_weight
    from t2v_turbo_core.schedule import NoiseSchedule

    schedule = NoiseSchedule.scaled_linear()
    t = torch.tensor([970, 999])
    torch.manual_seed(0)
    x0, noise, eps_hat = torch.randn(3, 2, 4, 2, 8, 8).unbind(0)
    z_t = schedule.add_noise(x0, noise, t)
    x0_err = ((schedule.pred_original_sample(eps_hat, t, z_t) - x0) ** 2).flatten(1).mean(1)
    eps_err = ((eps_hat - noise) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(layout_weight(schedule.alpha_bar(t)) * eps_err, x0_err)
    assert layout_weight(torch.tensor([1e-6])).item() == LAYOUT_X0_CAP


def test_attention_map_processor_computes_diffusers_cross_attention_and_keeps_its_maps():
    from bench.tinyworld import models as M
    from bench.tinyworld.build import AttentionMapProcessor

    torch.manual_seed(0)
    unet = M.make_teacher_unet().eval()
    x, t, c = torch.randn(2, 4, 8, 8, 8), torch.tensor([900, 20]), torch.randn(2, 16, 64)
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=c).sample
        maps = []
        for tr, side in M.spatial_transformer_resolutions(unet):
            for b in tr.transformer_blocks:
                b.attn2.set_processor(AttentionMapProcessor(maps, side))
        out = unet(x, t, encoder_hidden_states=c).sample
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert [s for s, _ in maps] == [8, 4, 2, 4, 4, 8, 8]
    for side, probs in maps:
        assert probs.shape == (2 * 8, side * side, 16)  # clips x frames, cells, tokens
        torch.testing.assert_close(probs.sum(-1), torch.ones(16, side * side))


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
    base = M.make_teacher_unet(cross_attention_at_8x8=False, position_bias=False).eval()
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


def test_position_bias_graft_starts_as_the_teacher_and_gives_each_level_its_own_positions():
    from bench.tinyworld import models as M
    from t2v_turbo_core.student import student_from_diffusers_unet

    torch.manual_seed(0)
    base = M.make_teacher_unet(position_bias=False).eval()
    grown = M.make_teacher_unet(position_bias=True).eval()
    missing, unexpected = grown.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith("pos_embed.weight") for k in missing)
    # One bias per spatial transformer block, sized to its level (8x8, 4x4, 2x2 mid, 4x4, 8x8);
    # the temporal transformers get none.
    shapes = {k: tuple(v.shape) for k, v in grown.state_dict().items() if k.endswith("pos_embed.weight")}
    assert shapes["down_blocks.0.attentions.0.transformer_blocks.0.pos_embed.weight"] == (1, 64, 32)
    assert shapes["down_blocks.1.attentions.0.transformer_blocks.0.pos_embed.weight"] == (1, 16, 64)
    assert shapes["mid_block.attentions.0.transformer_blocks.0.pos_embed.weight"] == (1, 4, 64)
    assert shapes["up_blocks.1.attentions.1.transformer_blocks.0.pos_embed.weight"] == (1, 16, 64)
    assert shapes["up_blocks.2.attentions.1.transformer_blocks.0.pos_embed.weight"] == (1, 64, 32)
    assert not any("temp_attentions" in k for k in shapes)
    x, t, c = torch.randn(2, 4, 8, 8, 8), torch.tensor([900, 20]), torch.randn(2, 16, 64)
    with torch.no_grad():
        assert torch.equal(grown(x, t, encoder_hidden_states=c).sample, base(x, t, encoder_hidden_states=c).sample)
    grown(x, t, encoder_hidden_states=c).sample.square().mean().backward()
    assert grown.mid_block.attentions[0].transformer_blocks[0].pos_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for k, p in grown.named_parameters():
            if k.endswith("pos_embed.weight"):
                p.normal_()
        moved = grown(x, t, encoder_hidden_states=c).sample
    assert (moved - base(x, t, encoder_hidden_states=c).sample).abs().max() > 1e-3
    with pytest.raises(ValueError, match="already"):
        M.add_spatial_position_bias(grown)
    # The student gets the same positions (its frozen base), so it starts as this teacher.
    student = student_from_diffusers_unet(grown, None, extend=M.add_spatial_position_bias).eval()
    with torch.no_grad():
        w = torch.zeros(2, student.config.time_cond_proj_dim)
        torch.testing.assert_close(student(x, t, encoder_hidden_states=c, timestep_cond=w).sample, moved)


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
    """Two plain steps, then the graft and two object-weighted steps, then two contrast steps,
    then the position graft and two layout steps: the shipped layout (grown UNet with its
    position bias, all five phases in zoo.json) comes out and loads."""
    from bench.tinyworld import models as M
    from bench.tinyworld.build import read_manifest, stage_teacher
    from tests.helpers.tinyworld import make_random_zoo
    from bench.tinyworld.zoo import load_tiny_teacher

    zoo = make_random_zoo(tmp_path / "zoo")
    ctx = Context(zoo_dir=zoo, work_dir=tmp_path / "work", log=lambda _m: None)
    _teacher_data(ctx)
    stage_teacher(ctx, steps=2, graft_steps=2, contrast_steps=2, layout_steps=2)
    entry = read_manifest(zoo)["stages"]["teacher"]
    assert entry["steps"] == 8 and set(entry["config"]["phases"]) == {"plain", "shape", "graft", "contrast", "layout"}
    assert set(entry["final"]) >= {"layout", "ground", "mse"}
    assert entry["config"]["unet"]["down_block_types"][0] == "CrossAttnDownBlock3D"
    assert torch.load(ctx.work_dir / "teacher_graft" / "state.pt", weights_only=True)["step"] == 2
    assert torch.load(ctx.work_dir / "teacher_contrast" / "state.pt", weights_only=True)["step"] == 2
    assert torch.load(ctx.work_dir / "teacher_layout" / "state.pt", weights_only=True)["step"] == 2
    teacher = load_tiny_teacher(zoo)
    # The grafted blocks and the position bias were trained (no longer the zero init) and exported.
    assert teacher.unet.down_blocks[0].attentions[0].proj_out.weight.abs().sum() > 0
    assert teacher.unet.mid_block.attentions[0].transformer_blocks[0].pos_embed.weight.abs().sum() > 0


def test_teacher_graft_phase_refuses_data_whose_captions_no_longer_match_the_world(tmp_path):
    from bench.tinyworld.build import SHARD, stage_teacher
    from tests.helpers.tinyworld import make_random_zoo

    zoo = make_random_zoo(tmp_path / "zoo")
    ctx = Context(zoo_dir=zoo, work_dir=tmp_path / "work", log=lambda _m: None)
    _teacher_data(ctx, captions=["a red circle"] * SHARD)
    with pytest.raises(StageError, match="no longer matches its seed"):
        stage_teacher(ctx, steps=0, graft_steps=2)
