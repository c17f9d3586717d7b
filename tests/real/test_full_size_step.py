"""One full-size T2V-Turbo (MS) training step on the CPU, with random weights (slow; not in CI).

Full-size networks: the ModelScopeT2V UNet3D (diffusers' default `UNet3DConditionModel()` is
exactly text-to-video-ms-1.7b's unet config) turned into the student (w projection + LoRA
rank 32), Stable Diffusion's VAE, HPSv2.1's open_clip ViT-H-14 and ViCLIP-L. Only the
resolution is tiny (64 x 64 pixels, 8 frames) and the text embeddings are random tensors (the
frozen text encoder plays no part in the step's cost). The step is the whole of Algorithm 1:
teacher CFG solve, target, student, VAE decode with gradients, both rewards, backward,
gradient clipping, AdamW on the LoRA, EMA update.

Wall time and peak resident memory go to stdout and `benchmarks/results/full_size_step.json`.
Run: `.venv/bin/python -m pytest -m slow tests/real/test_full_size_step.py -s` (it skips itself
unless `-m` selects slow tests: it needs ~13 GiB of RAM for several minutes).
"""

import gc
import json
import os
import platform
import time
from pathlib import Path

import pytest
import torch

from t2v_turbo_core.memory import reset_peak_rss, rss_gib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "full_size_step.json"






def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.slow
def test_full_size_ms_step_with_hps_and_viclip(request):
    # ~13 GiB of RAM for minutes: only when slow tests are asked for (`-m slow`), never as a
    # side effect of `pytest tests/real` on a shared machine.
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size step: run it with `pytest -m slow`")
    import open_clip
    from diffusers import AutoencoderKL, UNet3DConditionModel

    from t2v_turbo_core.arch.ldm_autoencoder import diffusers_vae_config
    from t2v_turbo_core.arch.viclip import ViCLIP
    from t2v_turbo_core.distillation import ConsistencyDistiller, DistillationConfig
    from t2v_turbo_core.lora import LoraSettings, trainable_parameters
    from t2v_turbo_core.models import VideoVAE
    from t2v_turbo_core.reward_models import HPSv21Reward, ViCLIPReward, build_hps_model, viclip_tokenizer
    from t2v_turbo_core.schedule import NoiseSchedule
    from t2v_turbo_core.student import student_from_diffusers_unet

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        torch.manual_seed(0)
        t_start = time.perf_counter()
        # text-to-video-ms-1.7b's unet/config.json values (= diffusers' defaults): 1,411,233,860
        # parameters.
        teacher = UNet3DConditionModel(
            sample_size=32, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            cross_attention_dim=1024, attention_head_dim=64,
        )  # fmt: skip
        student = student_from_diffusers_unet(teacher, LoraSettings(rank=32), guidance_embedding_dim=256)
        del teacher  # the distiller runs the teacher as the student with its adapters disabled
        gc.collect()
        assert student.time_embedding.cond_proj is not None
        vae = AutoencoderKL(**diffusers_vae_config()).eval()
        hps_model = build_hps_model()
        hps_model.set_grad_checkpointing(True)
        hps = HPSv21Reward(hps_model, open_clip.get_tokenizer("ViT-H-14"))
        viclip_model = ViCLIP()
        viclip_model.set_grad_checkpointing(True)
        viclip = ViCLIPReward(viclip_model, viclip_tokenizer())
        build_s = time.perf_counter() - t_start

        schedule = NoiseSchedule.scaled_linear(1000, 0.00085, 0.012)
        config = DistillationConfig(beta_img=2.0, beta_vid=3.0)  # the paper's MS weights; M = 6
        g = torch.Generator().manual_seed(0)
        uncond = torch.randn(1, 77, 1024, generator=g)
        text = torch.randn(1, 77, 1024, generator=g)
        latents = torch.randn(1, 4, 8, 8, 8, generator=g)  # 8 frames of 64 x 64 pixels
        distiller = ConsistencyDistiller(student, schedule, uncond, config, vae=VideoVAE(vae, 0.18215), image_reward=hps, video_reward=viclip)
        params = list(trainable_parameters(student).values())
        optimizer = torch.optim.AdamW(params, lr=1e-5)

        rss_before = rss_gib("VmRSS")
        peak_build = rss_gib("VmHWM")
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        out = distiller.step(latents, text, prompts=["a panda playing guitar on times square"], generator=g)
        t_forward = time.perf_counter() - t0
        out.loss.backward()
        t_backward = time.perf_counter() - t0 - t_forward
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        distiller.update_target()
        step_s = time.perf_counter() - t0
        peak_step = rss_gib("VmHWM")

        assert torch.isfinite(out.loss) and out.image_reward is not None and out.video_reward is not None
        assert torch.isfinite(torch.tensor(grad_norm)) and grad_norm > 0

        result = {
            "what": "one T2V-Turbo (MS) step: full-size ModelScope UNet3D student (LoRA r32) + SD VAE + HPSv2.1 ViT-H-14 + ViCLIP-L, random weights",
            "resolution": "8 frames x 64 x 64 pixels (latents 4 x 8 x 8 x 8), batch 1, fp32, CPU",
            "config": {"beta_img": config.beta_img, "beta_vid": config.beta_vid, "image_reward_frames": config.image_reward_frames,
                       "video_reward_frames": viclip.num_frames, "target": config.target, "reward_grad_checkpointing": True},
            "parameters": {"student_unet": _count(student), "student_trainable": sum(p.numel() for p in params), "vae": _count(vae),
                           "hpsv21": _count(hps_model), "viclip": _count(viclip_model)},
            "build_wall_s": round(build_s, 1),
            "step_wall_s": round(step_s, 1),
            "step_forward_s": round(t_forward, 1),
            "step_backward_s": round(t_backward, 1),
            "rss_before_step_gib": round(rss_before, 2),
            "peak_rss_build_gib": round(peak_build, 2),
            "peak_rss_step_gib": round(peak_step, 2) if reset else None,
            "peak_rss_overall_gib": round(max(peak_build, peak_step), 2),
            "loss": {k: round(v, 6) for k, v in out.as_log().items()},
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        }  # fmt: skip
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        torch.set_num_threads(threads)
