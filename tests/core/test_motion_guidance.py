"""T2V-Turbo-v2 motion guidance pieces against their formulas: attention-probability
recording, DDIM inversion on the N = 200 grid, the motion energy and its gradient, and the
guidance step. Tiny models, CPU, seconds."""

import math

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from t2v_turbo_core.arch.videocrafter2 import VideoCrafter2UNet, VideoCrafter2UNetConfig
from t2v_turbo_core.attention_probs import AttentionProbabilities, RecordingAttnProcessor, decoder_temporal_attention_layers, record
from t2v_turbo_core.inversion import ddim_invert, ddim_sample_from
from t2v_turbo_core.motion_guidance import (
    apply_motion_guidance,
    masked_attention_mse,
    motion_energy,
    motion_gs_from_lambda,
    motion_guidance_coefficient,
    motion_score,
    paper_lambda,
)
from t2v_turbo_core.schedule import NoiseSchedule, ddim_grid

from .conftest import TEXT_DIM, make_tiny_unet3d

SCHEDULE = NoiseSchedule.scaled_linear()




TINY_VC2 = VideoCrafter2UNetConfig(
    model_channels=8,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(1, 2),
    num_head_channels=4,
    context_dim=TEXT_DIM,
    norm_num_groups=4,
    init_attn_heads=2,
)


def make_tiny_vc2(seed: int = 0) -> VideoCrafter2UNet:
    torch.manual_seed(seed)
    return VideoCrafter2UNet(TINY_VC2).eval()


def _inputs(dtype=torch.float32, frames=6, hw=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, frames, hw, hw, generator=g, dtype=dtype)
    c = torch.randn(1, 3, TEXT_DIM, generator=g, dtype=dtype)
    return z, c


def _capture_inputs(unet, layers):
    """Forward pre-hooks that keep each layer's input hidden states (to recompute q, k by hand)."""
    seen, handles = {}, []
    modules = dict(unet.named_modules())
    for name in layers:
        def hook(module, args, kwargs, name=name):
            seen[name] = (kwargs.get("hidden_states", args[0] if args else None)).detach()
        handles.append(modules[name].register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


def _manual_probs(module, x, heads):
    """softmax(q k^T / sqrt(d)) per head, written out from the layer's to_q / to_k."""
    q, k = module.to_q(x), module.to_k(x)
    b, n, inner = q.shape
    d = inner // heads
    q = q.reshape(b, n, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(b, n, heads, d).permute(0, 2, 1, 3)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(d)
    return torch.exp(scores - scores.amax(-1, keepdim=True)) / torch.exp(scores - scores.amax(-1, keepdim=True)).sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- recording


def _tiny_world_teacher():
    # The tiny world's teacher architecture (random weights): UNet3D with spatial position bias.
    from bench.tinyworld.models import make_teacher_unet

    torch.manual_seed(0)
    return make_teacher_unet().eval()


@pytest.mark.parametrize("family", ["diffusers", "tinyworld", "vc2"])
def test_recorded_probabilities_equal_manual_softmax_and_outputs_unchanged(family):
    unet = {"diffusers": make_tiny_unet3d, "tinyworld": _tiny_world_teacher, "vc2": make_tiny_vc2}[family]()
    z, c = _inputs()
    if family == "tinyworld":
        c = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    layers = decoder_temporal_attention_layers(unet)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        off = unet(z, t, encoder_hidden_states=c)
        off = off.sample if hasattr(off, "sample") else off
        seen, handles = _capture_inputs(unet, layers)
        with AttentionProbabilities(unet) as rec:
            on = unet(z, t, encoder_hidden_states=c)
            on = on.sample if hasattr(on, "sample") else on
        for h in handles:
            h.remove()
    assert set(rec.maps) == set(layers) and len(layers) >= 2
    for name in layers:
        probs = rec.maps[name]
        frames = z.shape[2]
        assert probs.shape[-2:] == (frames, frames)  # temporal: queries and keys are frames
        manual = _manual_probs(modules[name], seen[name], modules[name].heads)
        torch.testing.assert_close(probs, manual, rtol=0, atol=1e-6)
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)), rtol=0, atol=1e-6)
    # diffusers: explicit softmax instead of SDPA, fp32 rounding only; VC2: output untouched.
    tol = 0.0 if family == "vc2" else 1e-5  # measured 1.2e-6 (tiny UNet3D), 7.5e-7 (tiny world)
    assert (on - off).abs().max().item() <= tol
    # Recording leaves nothing behind.
    if family != "vc2":
        assert all(isinstance(modules[n].processor, AttnProcessor2_0) for n in layers)
    else:
        assert all(not modules[n]._forward_hooks for n in layers)
    with torch.no_grad():
        again = unet(z, t, encoder_hidden_states=c)
    again = again.sample if hasattr(again, "sample") else again
    assert torch.equal(again, off)


def test_recording_keeps_the_graph_and_double_precision_outputs_match():
    unet = make_tiny_unet3d().double()
    z, c = _inputs(torch.float64)
    t = torch.tensor([300])
    off = unet(z, t, encoder_hidden_states=c).sample
    zg = z.clone().requires_grad_(True)
    out, maps = record(unet, lambda: unet(zg, t, encoder_hidden_states=c).sample)
    assert (out - off).abs().max().item() < 1e-12
    assert all(m.requires_grad for m in maps.values())
    (g,) = torch.autograd.grad(sum(m.square().sum() for m in maps.values()), zg)
    assert g.abs().sum() > 0


def test_vc2_decoder_layers_are_the_released_nine():
    with torch.device("meta"):
        full = VideoCrafter2UNet(VideoCrafter2UNetConfig())
    assert decoder_temporal_attention_layers(full) == [f"output_blocks.{i}.2.transformer_blocks.0.attn1" for i in range(3, 12)]


def test_recorder_refuses_unknown_layers():
    unet = make_tiny_unet3d()
    with pytest.raises(ValueError, match="no such attention layers"):
        AttentionProbabilities(unet, ["up_blocks.9.nothing"])
    with pytest.raises(ValueError, match="not an attention layer"):
        AttentionProbabilities(unet, ["conv_in"])
    layer = decoder_temporal_attention_layers(unet)[0]
    dict(unet.named_modules())[layer].set_processor(RecordingAttnProcessor("other", {}))
    with pytest.raises(ValueError, match="attention processor RecordingAttnProcessor"):
        AttentionProbabilities(unet)


# ----------------------------------------------------------------------------- inversion


class ExactNoise(torch.nn.Module):
    """An exact-eps oracle: the noise of the chain sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, z, t, encoder_hidden_states=None, timestep_cond=None):
        return self.eps


def _forward_process(x0, eps, t):
    abar = SCHEDULE.alphas_cumprod.double()[t]
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def test_ddim_inversion_with_exact_noise_follows_the_forward_process_and_round_trips():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 4, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 4, 4, 4, 4, generator=g, dtype=torch.float64)
    oracle = ExactNoise(eps)
    clean = _forward_process(x0, eps, 0)  # the chain's t = 0 point (abar_0 < 1)
    c = torch.zeros(2, 1, TEXT_DIM, dtype=torch.float64)
    grid = ddim_grid(5)
    assert len(grid) == 200 and grid[0] == 4 and grid[-1] == 999
    path = ddim_invert(oracle, SCHEDULE, clean, c, 199, skip=5, return_all=True)
    assert len(path) == 200
    for i in (0, 1, 99, 100, 199):
        torch.testing.assert_close(path[i], _forward_process(x0, eps, int(grid[i])), rtol=0, atol=1e-11)
    for index in (0, 100, 199):
        back = ddim_sample_from(oracle, SCHEDULE, path[index], c, index, skip=5)
        torch.testing.assert_close(back, clean, rtol=0, atol=1e-11)


def test_ddim_inversion_and_sampling_query_the_grid_timesteps():
    """Inversion asks for eps at the step's target timestep t_i (the released solver's
    convention), sampling at the step's start t_i; both walk the k = 5 grid."""
    calls = []

    class Logger(torch.nn.Module):
        def forward(self, z, t, encoder_hidden_states=None, timestep_cond=None):
            calls.append(int(t[0]))
            return torch.zeros_like(z)

    z = torch.randn(1, 4, 2, 2, 2, dtype=torch.float64)
    c = torch.zeros(1, 1, TEXT_DIM, dtype=torch.float64)
    ddim_invert(Logger(), SCHEDULE, z, c, 3, skip=5)
    assert calls == [4, 9, 14, 19]
    calls.clear()
    ddim_sample_from(Logger(), SCHEDULE, z, c, 3, skip=5)
    assert calls == [19, 14, 9, 4]
    calls.clear()
    ddim_invert(Logger(), SCHEDULE, z, c, 1, skip=20)  # N = 50
    assert calls == [19, 39]


def test_ddim_round_trip_with_a_tiny_unet_is_close():
    unet = make_tiny_unet3d().double()
    z, c = _inputs(torch.float64, frames=4, hw=4)
    z = 0.5 * z
    errors = {}
    for index in (0, 19):
        inv = ddim_invert(unet, SCHEDULE, z, c, index, skip=5)
        back = ddim_sample_from(unet, SCHEDULE, inv, c, index, skip=5)
        errors[index] = ((back - z).norm() / z.norm()).item()
        assert (inv - z).norm() / z.norm() > 10 * errors[index]  # the inversion did move z
    # Measured (relative L2): 8.5e-4 after 1 step, 3.6e-3 after 20 steps on this untrained
    # UNet (1.3e-2 after 100, 0.83 after the full 200, where eps(z, t) changes a lot
    # between grid points of pure noise); bounds with ~2.5x headroom.
    assert errors[0] < 2e-3
    assert errors[19] < 1e-2


def test_ddim_inversion_refuses_an_index_off_the_grid():
    with pytest.raises(ValueError, match="grid index"):
        ddim_invert(ExactNoise(torch.zeros(1)), SCHEDULE, torch.zeros(1, 4, 1, 1, 1), torch.zeros(1, 1, 1), 200, skip=5)


# ----------------------------------------------------------------------------- energy


def _released_style_energy(refs, gens):
    """The energy written independently: sort along keys, mask the top-1, MSE over masked."""
    per_layer = []
    for ref, gen in zip(refs, gens):
        order = torch.sort(ref, dim=-1).indices
        mask = torch.zeros_like(ref, dtype=torch.bool).scatter_(-1, order[..., -1:], True)
        per_layer.append(100 * ((ref[mask] - gen[mask]) ** 2).sum() / mask.sum())
    return 100 * torch.stack(per_layer).mean()


def test_motion_energy_formula():
    g = torch.Generator().manual_seed(0)
    refs = [torch.randn(5, 2, 6, 6, generator=g, dtype=torch.float64).softmax(-1) for _ in range(3)]
    gens = [torch.randn(5, 2, 6, 6, generator=g, dtype=torch.float64).softmax(-1) for _ in range(3)]
    e = motion_energy(refs, gens)
    torch.testing.assert_close(e, _released_style_energy(refs, gens), rtol=1e-12, atol=0)
    # The masked MSE averages over the masked entries only: F times the MSE of the masked maps.
    m = torch.nn.functional.one_hot(refs[0].argmax(-1), 6)
    torch.testing.assert_close(masked_attention_mse(refs[0], gens[0]), 6 * torch.mean((refs[0] * m - gens[0] * m) ** 2))
    assert motion_energy(refs, refs).item() == 0.0
    with pytest.raises(ValueError):
        motion_energy(refs, gens[:2])


@pytest.mark.parametrize("family", ["diffusers", "vc2"])
def test_motion_score_matches_a_finite_difference(family):
    unet = (make_tiny_unet3d() if family == "diffusers" else make_tiny_vc2()).double()
    z0, c = _inputs(torch.float64, frames=4, hw=4, seed=3)
    g = torch.Generator().manual_seed(4)
    t = torch.tensor([600])
    z_t = _forward_process(z0, torch.randn(z0.shape, generator=g, dtype=torch.float64), 600)
    reference = ddim_invert(unet, SCHEDULE, z0, c, 2, skip=5)
    score, eps, energy = motion_score(unet, z_t, t, reference, c)
    assert energy.item() > 0 and score.abs().sum() > 0
    with torch.no_grad():
        plain = unet(z_t, t, encoder_hidden_states=c)
    torch.testing.assert_close(eps, plain.sample if hasattr(plain, "sample") else plain, rtol=0, atol=1e-12)
    assert all(p.grad is None for p in unet.parameters())

    def energy_at(z):
        return motion_score(unet, z, t, reference, c)[2].item()

    h = 1e-5
    for _ in range(3):
        v = torch.randn(z_t.shape, generator=g, dtype=torch.float64)
        fd = (energy_at(z_t + h * v) - energy_at(z_t - h * v)) / (2 * h)
        directional = (score * v).sum().item()
        assert abs(fd - directional) <= 1e-7 * max(1.0, abs(directional)), (fd, directional)  # measured ~2e-10


# ----------------------------------------------------------------------------- guidance


def test_guidance_coefficient_is_the_released_codes():
    t = torch.tensor([999, 504, 4])
    abar = SCHEDULE.alphas_cumprod.double()[t]
    c = motion_guidance_coefficient(SCHEDULE, t, ndim=5)
    assert c.shape == (3, 1, 1, 1, 1)
    torch.testing.assert_close(c.flatten(), (1 - abar.sqrt()).sqrt())
    torch.testing.assert_close(motion_guidance_coefficient(SCHEDULE, t, 2, "sigma").flatten(), (1 - abar).sqrt())
    with pytest.raises(ValueError):
        motion_guidance_coefficient(SCHEDULE, t, 2, "paper")


def test_guidance_is_applied_only_in_the_upper_half_of_the_grid():
    grid = ddim_grid(5)
    index = torch.tensor([0, 99, 100, 150, 199])
    t = grid[index]
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(5, 4, 2, 3, 3, generator=g)
    score = torch.randn(5, 4, 2, 3, 3, generator=g)
    out = apply_motion_guidance(eps, score, index, t, SCHEDULE, 0.05, num_grid_steps=200, tau=0.5)
    assert torch.equal(out[:2], eps[:2])
    abar = SCHEDULE.alphas_cumprod.double()[t[2:]]
    expected = eps[2:] - (0.05 * (1 - abar.sqrt()).sqrt()).reshape(-1, 1, 1, 1, 1).float() * score[2:]
    torch.testing.assert_close(out[2:], expected, rtol=0, atol=1e-6)
    assert not torch.equal(out[2:], eps[2:])
    no_motion = apply_motion_guidance(eps, score, index, t, SCHEDULE, 0.05, 200, use_motion_guide=torch.tensor([1, 1, 0, 1, 0]))
    assert torch.equal(no_motion[[0, 1, 2, 4]], eps[[0, 1, 2, 4]]) and torch.equal(no_motion[3], out[3])


def test_paper_lambda_is_motion_gs_times_1e4():
    assert paper_lambda(0.05) == pytest.approx(500.0)
    assert motion_gs_from_lambda(500.0) == pytest.approx(0.05)
