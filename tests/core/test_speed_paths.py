"""The fast paths of sampling and training compute what the plain paths compute.

* the distiller's step (module lists kept across steps, the UNet's dtype cached per step)
  gives the same losses and weights, bit for bit, as a reference step written out below the
  way the distiller computed it before (every walk redone, the plain diffusers dtype);
* CFG's two predictions in two calls equal the one batched call (to float rounding);
* `cached_dtype` is the dtype diffusers computes and leaves the model as it found it;
* `prepare_for_sampling` (merged adapter, eval mode) is the student's function;
* a temporal conv run as a 2-D convolution on the CPU (`TemporalConv3d`) is Conv3d's function,
  gradients included, and the models and students get it without any change of weights.
"""

import dataclasses
import contextlib

import pytest
import torch

from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
from t2v_turbo_core.lora import LoraSettings, adapters_disabled, trainable_parameters
from t2v_turbo_core.losses import distance
from t2v_turbo_core.models import (
    TEMPORAL_CONV_2D_BELOW_BATCH,
    TemporalConv3d,
    VideoVAE,
    cached_dtype,
    predict_noise,
    use_temporal_conv2d,
)
from t2v_turbo_core.rewards import mixed_reward_loss
from t2v_turbo_core.sampling import (
    CFG_SPLIT_MIN_BATCH,
    cfg_in_one_call,
    consistency_sample,
    prepare_for_sampling,
    teacher_ddim_sample,
)
from t2v_turbo_core.schedule import NoiseSchedule, boundary_scalings, ddim_step, guidance_scale_embedding
from t2v_turbo_core.student import student_from_diffusers_unet

from .conftest import TEXT_DIM
from .test_distillation import LATENT_SHAPE, ToyBrightnessReward, ToyTextEncoder, ToyVideoReward


def _reference_step(d: ConsistencyDistiller, latents, text, prompts, generator):
    """Algorithm 1's loss as the distiller computed it before its fast paths (paper weighting):
    eval mode and the disabled adapters found by walking the modules, diffusers' own dtype."""
    cfg, sched, student = d.config, d.schedule, d.student
    b, nd = latents.shape[0], latents.ndim
    shape = (b, *([1] * (nd - 1)))
    index = torch.randint(0, len(d.grid), (b,), generator=generator)
    t_start = d.grid[index]
    t_end = (t_start - cfg.skip).clamp(min=0)
    noise = torch.randn(latents.shape, generator=generator)
    z_start = sched.add_noise(latents, noise, t_start)
    w = torch.rand((b,), generator=generator) * (cfg.w_max - cfg.w_min) + cfg.w_min
    w_emb = guidance_scale_embedding(w, cfg.guidance_embedding_dim)
    w_b = w.reshape(shape)
    cs_start, co_start = (x.reshape(shape) for x in boundary_scalings(t_start, cfg.sigma_data, cfg.timestep_scaling))
    cs_end, co_end = (x.reshape(shape) for x in boundary_scalings(t_end, cfg.sigma_data, cfg.timestep_scaling))
    uncond = d.uncond_embedding.expand(b, *text.shape[1:])
    modes = [(m, m.training) for m in student.modules()]
    student.eval()
    try:
        with torch.no_grad():
            with adapters_disabled(student):
                eps_c, eps_u = predict_noise(student, torch.cat([z_start, z_start]), torch.cat([t_start, t_start]),
                                             torch.cat([text, uncond]), None).float().chunk(2)
            x0_c, x0_u = sched.pred_original_sample(eps_c, t_start, z_start), sched.pred_original_sample(eps_u, t_start, z_start)
            z_end = ddim_step(sched, x0_c + w_b * (x0_c - x0_u), eps_c + w_b * (eps_c - eps_u), t_end)
            with d.ema.swapped_in() if d.ema is not None else contextlib.nullcontext():
                eps_t = predict_noise(student, z_end, t_end, text, w_emb).float()
            target = cs_end * z_end + co_end * sched.pred_original_sample(eps_t, t_end, z_end)
    finally:
        for m, was in modes:
            m.training = was
    eps = predict_noise(student, z_start, t_start, text, w_emb)
    pred = cs_start * z_start + co_start * sched.pred_original_sample(eps.float(), t_start, z_start)
    loss = distance(pred, target, cfg.loss_type, cfg.huber_c)
    terms = mixed_reward_loss(pred, prompts, d.vae, image_reward=d.image_reward, video_reward=d.video_reward,
                              beta_img=cfg.beta_img, beta_vid=cfg.beta_vid, image_frames=cfg.image_reward_frames,
                              generator=generator)
    return loss + terms.loss.float()


def _distiller(tiny_unet3d, tiny_vae, target, lora_forward="adapter"):
    teacher = tiny_unet3d(seed=0)
    student = student_from_diffusers_unet(teacher, LoraSettings(rank=4, dropout=0.0)).train()
    text_encoder = ToyTextEncoder()
    config = DistillationConfig(image_reward_frames=2, target=target, lora_forward=lora_forward)
    d = ConsistencyDistiller(student, NoiseSchedule.scaled_linear(), text_encoder([""]).detach(),
                             config, vae=VideoVAE(tiny_vae(seed=1), scaling_factor=1.0),
                             image_reward=ToyBrightnessReward(), video_reward=ToyVideoReward())
    return d, text_encoder


def _train(d, text_encoder, step_fn, steps=3):
    params = list(trainable_parameters(d.student).values())
    opt = torch.optim.AdamW(params, lr=1e-2)
    prompts = ["a red circle", "a blue square"]
    torch.manual_seed(7)  # the student trains in train mode: the UNet's dropout draws from here
    losses = []
    for s in range(steps):
        latents = torch.randn(2, *LATENT_SHAPE, generator=torch.Generator().manual_seed(100 + s))
        loss = step_fn(d, latents, text_encoder(prompts).detach(), prompts, torch.Generator().manual_seed(s))
        losses.append(loss.detach().clone())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        d.update_target()
    return losses, {n: p.detach().clone() for n, p in trainable_parameters(d.student).items()}


@pytest.mark.parametrize("target", ["ema", "online"])
def test_merged_lora_forward_trains_as_peft_forward_to_float_rounding(tiny_unet3d, tiny_vae, target):
    """lora_forward=merged (W + s B A per call) against peft's layer forward: the first steps'
    losses and the trained weights agree to float rounding, and they are computed differently
    (not bit-identical), so the comparison is between the two paths; so do the first step's
    gradients."""
    merged, text_encoder = _distiller(tiny_unet3d, tiny_vae, target, lora_forward="merged")
    peft_path, peft_text = _distiller(tiny_unet3d, tiny_vae, target, lora_forward="adapter")
    grads = []
    for d, enc in ((merged, text_encoder), (peft_path, peft_text)):
        torch.manual_seed(7)
        latents = torch.randn(2, *LATENT_SHAPE, generator=torch.Generator().manual_seed(1))
        d.step(latents, enc(["a", "b"]).detach(), ["a", "b"], torch.Generator().manual_seed(0)).loss.backward()
        grads.append({n: p.grad.clone() for n, p in trainable_parameters(d.student).items()})
        d.student.zero_grad(set_to_none=True)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-7)
    losses, _ = _train(merged, text_encoder, lambda d, *a: d.step(*a).loss)
    ref_losses, _ = _train(peft_path, peft_text, lambda d, *a: d.step(*a).loss)
    # Adam (lr 1e-2) divides by the gradients' size, so rounding differences in near-zero
    # gradients grow over the steps: the losses agree to 1e-4, not bit for bit.
    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), rtol=1e-4, atol=1e-7)
    assert [float(x) for x in losses] != [float(x) for x in ref_losses]
    assert len({float(x) for x in losses}) == len(losses)


@pytest.mark.parametrize("target", ["ema", "online"])
def test_distiller_step_is_bit_identical_to_the_reference_step(tiny_unet3d, tiny_vae, target):
    fast, text_encoder = _distiller(tiny_unet3d, tiny_vae, target)
    ref, ref_text = _distiller(tiny_unet3d, tiny_vae, target)
    losses, weights = _train(fast, text_encoder, lambda d, *a: d.step(*a).loss)
    ref_losses, ref_weights = _train(ref, ref_text, _reference_step)
    assert all(torch.isfinite(x) for x in losses)
    assert [float(x) for x in losses] == [float(x) for x in ref_losses]
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    # The losses do move (the comparison is not between constants).
    assert len({float(x) for x in losses}) == len(losses)


def test_distiller_leaves_modes_and_classes_as_it_found_them(tiny_unet3d, tiny_vae):
    d, text_encoder = _distiller(tiny_unet3d, tiny_vae, "ema")
    cls = type(d.student)
    d.step(torch.randn(2, *LATENT_SHAPE), text_encoder(["a", "b"]).detach(), ["a", "b"], torch.Generator().manual_seed(0))
    assert type(d.student) is cls and "_cached_dtype" not in d.student.__dict__
    assert all(m.training for m in d.student.modules())
    assert all(layer._disable_adapters is False for layer in d._lists()[1])


def test_cfg_in_one_call_policy():
    assert cfg_in_one_call(1, "cpu") and cfg_in_one_call(CFG_SPLIT_MIN_BATCH - 1, "cpu")
    assert not cfg_in_one_call(CFG_SPLIT_MIN_BATCH, "cpu")
    assert cfg_in_one_call(64, "cuda")
    assert cfg_in_one_call(64, "cpu", "one_call") and not cfg_in_one_call(1, "cuda", "two_calls")
    with pytest.raises(ValueError, match="cfg_batching"):
        cfg_in_one_call(1, "cpu", "fused")


def test_cfg_in_two_calls_equals_the_batched_call(tiny_unet3d):
    unet = tiny_unet3d(seed=2)
    text = torch.randn(3, 5, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    uncond = torch.zeros(1, 5, TEXT_DIM)
    outs = {}
    for mode in ("one_call", "two_calls"):
        outs[mode] = teacher_ddim_sample(unet, text, uncond, (3, 4, 3, 4, 4), NoiseSchedule.scaled_linear(), num_steps=4,
                                         guidance_scale=7.5, generator=torch.Generator().manual_seed(1), cfg_batching=mode)
    assert outs["one_call"].nfe == outs["two_calls"].nfe == 8  # 2 NFE per step either way
    # Float rounding only (the batch size picks the kernels), amplified by g = 7.5 over 4 steps.
    scale = float(outs["one_call"].latents.abs().max())
    torch.testing.assert_close(outs["one_call"].latents, outs["two_calls"].latents, rtol=0, atol=1e-4 * scale)
    assert outs["one_call"].latents.abs().max() > 0


def test_cached_dtype_is_diffusers_dtype_and_is_undone(tiny_unet3d):
    unet = tiny_unet3d(seed=0)
    cls, z, t = type(unet), torch.randn(1, 4, 3, 4, 4), torch.tensor([500])
    text = torch.randn(1, 5, TEXT_DIM)
    with torch.no_grad():
        plain = unet(z, t, encoder_hidden_states=text).sample
        with cached_dtype(unet, unet, object()):
            assert type(unet) is not cls and isinstance(unet, cls) and unet.dtype == torch.float32
            cached = unet(z, t, encoder_hidden_states=text).sample
    assert torch.equal(plain, cached)
    assert type(unet) is cls and "_cached_dtype" not in unet.__dict__
    with pytest.raises(RuntimeError, match="boom"), cached_dtype(unet):
        raise RuntimeError("boom")
    assert type(unet) is cls


@pytest.mark.parametrize("stride, dilation, groups", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_temporal_conv3d_is_conv3d_forward_and_backward(monkeypatch, stride, dilation, groups):
    torch.manual_seed(0)
    plain = torch.nn.Conv3d(6, 4, (3, 1, 1), stride=(stride, 1, 1), padding=(dilation, 0, 0), dilation=(dilation, 1, 1), groups=groups)
    fast = torch.nn.Conv3d(6, 4, (3, 1, 1), stride=(stride, 1, 1), padding=(dilation, 0, 0), dilation=(dilation, 1, 1), groups=groups)
    fast.load_state_dict(plain.state_dict())
    assert use_temporal_conv2d(fast) == 1 and type(fast) is TemporalConv3d
    calls = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: calls.append(1) or conv2d(*a, **k))
    for batch in (1, 3, TEMPORAL_CONV_2D_BELOW_BATCH):
        x = torch.randn(batch, 6, 7, 3, 5, generator=torch.Generator().manual_seed(batch))
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        before = len(calls)
        ya, yb = plain(xa), fast(xb)
        # Below the threshold the 2-D convolution ran; from it up, Conv3d's own kernel.
        assert len(calls) - before == (1 if batch < TEMPORAL_CONV_2D_BELOW_BATCH else 0)
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-6)
        g = torch.randn(ya.shape, generator=torch.Generator().manual_seed(9))
        ga = torch.autograd.grad(ya, (xa, plain.weight, plain.bias), g)
        gb = torch.autograd.grad(yb, (xb, fast.weight, fast.bias), g)
        for a, b in zip(ga, gb):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_models_and_students_get_temporal_conv2d_and_nothing_else_changes(tiny_unet3d, tiny_vae):
    unet = tiny_unet3d(seed=0)
    plain_state = {k: v.clone() for k, v in unet.state_dict().items()}
    temporal = [n for n, m in unet.named_modules() if type(m) is torch.nn.Conv3d]
    assert temporal, "the tiny UNet3D has temporal convs"
    others = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.Conv3d(3, 4, (1, 2, 2), stride=(1, 2, 2)),
                                 torch.nn.Conv3d(3, 4, (3, 1, 1), padding="same"), torch.nn.Conv3d(3, 4, (3, 1, 1), padding_mode="circular"))
    assert use_temporal_conv2d(others) == 0 and all(type(m) is torch.nn.Conv3d for m in others)
    z, t = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([500, 20])
    text = torch.randn(2, 5, TEXT_DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = unet(z, t, encoder_hidden_states=text).sample
    from t2v_turbo_core.models import TextToVideoModel

    model = TextToVideoModel("toy", unet, VideoVAE(tiny_vae(seed=0)), ToyTextEncoder(), NoiseSchedule.scaled_linear(),
                             num_frames=3, height=32, width=32, fps=8, make_student=None)
    assert all(type(model.unet.get_submodule(n)) is TemporalConv3d for n in temporal)
    assert list(unet.state_dict()) == list(plain_state) and all(torch.equal(unet.state_dict()[k], v) for k, v in plain_state.items())
    with torch.no_grad():
        after = unet(z, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    # The student (built from the config, on the teacher's tensors) gets them under its LoRA,
    # and its merged-per-call forward treats them like any Conv3d.
    from t2v_turbo_core.lora import _mergeable

    student = student_from_diffusers_unet(unet, LoraSettings(rank=4, dropout=0.0))
    wrapped = [m for m in student.modules() if type(m).__name__ == "Conv3d" and hasattr(m, "base_layer")]
    assert wrapped and all(type(m.get_base_layer()) is TemporalConv3d for m in wrapped)
    assert all(_mergeable(m) is not None for m in wrapped)


def test_prepare_for_sampling_merges_and_turns_dropout_off(tiny_unet3d):
    student = student_from_diffusers_unet(tiny_unet3d(seed=0), LoraSettings(rank=4, dropout=0.0))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in student.named_parameters():
            if "lora_" in n or "cond_proj" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    text = torch.randn(2, 5, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    sched = NoiseSchedule.scaled_linear()
    before = consistency_sample(student.eval(), text, (2, 4, 3, 4, 4), sched, num_steps=2, generator=torch.Generator().manual_seed(1))
    student.train()
    fast = prepare_for_sampling(student)
    assert not any("lora_" in n for n, _ in fast.named_parameters())
    assert not any(m.training for m in fast.modules()) and not any(p.requires_grad for p in fast.parameters())
    after = consistency_sample(fast, text, (2, 4, 3, 4, 4), sched, num_steps=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(after.latents, before.latents, rtol=1e-4, atol=1e-5)


def test_a_teacher_record_from_another_student_gives_the_same_training(tiny_unet3d, tiny_vae):
    """The teacher's pass does not depend on the student: a record made while training one
    student (here: other rewards, other LoRA init) trains another exactly as its own pass would."""
    producer, text_encoder = _distiller(tiny_unet3d, tiny_vae, "ema")
    producer.config = dataclasses.replace(producer.config, beta_img=0.0)  # another variant
    records = []

    def producing_step(d, *args):
        out = d.step(*args)
        records.append(out.teacher_record)
        return out.loss

    producer_losses, _ = _train(producer, text_encoder, producing_step)
    alone, text_a = _distiller(tiny_unet3d, tiny_vae, "ema")
    shared, text_s = _distiller(tiny_unet3d, tiny_vae, "ema")
    losses, weights = _train(alone, text_a, lambda d, *a: d.step(*a).loss)
    it = iter(records)
    calls = []
    original = shared._teacher_eps
    shared._teacher_eps = lambda *a: calls.append(1) or original(*a)
    shared_losses, shared_weights = _train(shared, text_s, lambda d, *a: d.step(*a, teacher_record=next(it)).loss)
    assert calls == []  # every step used the record
    assert [float(x) for x in losses] == [float(x) for x in shared_losses]
    assert all(torch.equal(weights[k], shared_weights[k]) for k in weights)
    assert [float(x) for x in producer_losses] != [float(x) for x in losses]  # the producer was another student


def test_a_record_of_other_draws_is_recomputed_and_a_matching_one_is_used(tiny_unet3d, tiny_vae):
    d, text_encoder = _distiller(tiny_unet3d, tiny_vae, "ema")
    prompts = ["a red circle", "a blue square"]
    latents = torch.randn(2, *LATENT_SHAPE, generator=torch.Generator().manual_seed(3))
    text = text_encoder(prompts).detach()
    torch.manual_seed(0)
    out = d.step(latents, text, prompts, generator=torch.Generator().manual_seed(5))
    rec = out.teacher_record
    assert rec is not None and rec.eps.shape[0] == 2 * latents.shape[0]
    foreign = distillation_record(rec, z_start=rec.z_start + 1.0, eps=torch.zeros_like(rec.eps))
    torch.manual_seed(0)
    again = d.step(latents, text, prompts, generator=torch.Generator().manual_seed(5), teacher_record=foreign)
    assert float(again.loss) == float(out.loss) and again.teacher_record is not foreign
    # A record that matches is trusted as is (so a wrong eps there would change the loss).
    torch.manual_seed(0)
    used = d.step(latents, text, prompts, generator=torch.Generator().manual_seed(5),
                  teacher_record=distillation_record(rec, eps=torch.zeros_like(rec.eps)))
    assert float(used.loss) != float(out.loss)


def distillation_record(rec, **changes):
    import dataclasses

    return dataclasses.replace(rec, **changes)
