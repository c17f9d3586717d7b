"""`bench export`: a finished student in the formats the field loads.

* `diffusers` (ModelScopeT2V and the tiny world): a `TextToVideoSDPipeline` folder (unet/,
  vae/, text_encoder/, tokenizer/, scheduler/, model_index.json). The UNet carries the w
  projection as diffusers does (`time_cond_proj_dim: 256`, `time_embedding.cond_proj`), with
  the LoRA merged in, or (`--no-merge`) the teacher's UNet in unet/ and the student as a peft
  adapter in unet_lora/ (what the `lora` format writes); the scheduler is an `LCMScheduler` over the
  teacher's betas with the harness's LCM origin grid (50 steps).
* `lvdm` (VideoCrafter2): `model.ckpt`, the teacher's LatentDiffusion checkpoint with the merged
  student UNet in `model.diffusion_model.*` and the w projection under the name the released
  T2V-Turbo code gives it (`time_cond_proj`), and `unet.pt`, the UNet state dict alone (what the
  released `app.py --unet_dir` loads into its UNetModel built with `time_cond_proj_dim: 256`).
* `lora`: the adapter alone in peft's format (`adapter_config.json` +
  `adapter_model.safetensors`): LoRA on every layer of the teacher's UNet, and the w
  projection as a module peft saves whole (`modules_to_save`).

Every export writes a model card (README.md) and `export.json` (the same facts, for
programs). Everything is written into a temporary folder beside `--out` and renamed into
place at the end, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import typer

from bench.errors import BenchError

FORMATS = ("diffusers", "lvdm", "lora")
FORMATS_BY_TEACHER = {"tiny": ("diffusers", "lora"), "ms": ("diffusers", "lora"), "vc2": ("lvdm", "lora")}
CARD_NAME = "README.md"
RECORD_NAME = "export.json"
# The released T2V-Turbo LVDM UNetModel's w projection (lvdm/modules/networks/openaimodel3d.py):
# nn.Linear(time_cond_proj_dim, model_channels, bias=False) at the top level of the UNet.
LVDM_W_PROJECTION = "time_cond_proj"
LVDM_UNET_PREFIX = "model.diffusion_model."
UNMERGED_ADAPTER_DIR = "unet_lora"  # --no-merge: the peft adapter beside the teacher's unet/

TEACHER_NAMES = {
    "tiny": "the tiny world's teacher (diffusers UNet3DConditionModel + spatial position bias, AutoencoderKL, CLIP text encoder)",
    "ms": "ModelScopeT2V (text-to-video-ms-1.7b, diffusers layout)",
    "vc2": "VideoCrafter2 (LVDM model.ckpt)",
}
VARIANT_NAMES = {
    "vcm": "VCM (consistency distillation only)",
    "vcm+img": "VCM + R_img (image-text reward)",
    "vcm+vid": "VCM + R_vid (video-text reward)",
    "vcm+img+vid": "T2V-Turbo (VCM + R_img + R_vid)",
}


class ExportError(BenchError, RuntimeError):
    """Bad input to `bench export` (exit 2): nothing has been written."""


@dataclass
class ExportPlan:
    run_dir: Path
    record: dict
    cfg: Any
    fmt: str
    out: Path
    merge: bool


def plan_export(run_dir: str | Path, fmt: str, out: str | Path, merge: bool = True) -> ExportPlan:
    """Every check that needs no model, so that bad input fails before anything is loaded."""
    from bench.config import config_from_dict
    from bench.runs import RunError, read_run, student_adapter_path

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    try:
        record = read_run(run_dir)
    except RunError as err:
        raise ExportError(str(err)) from err
    if record.get("kind") != "train":
        raise ExportError(f"{run_dir} is a {record.get('kind')!r} run, not a training run: there is no student to export")
    adapter = student_adapter_path(run_dir)
    if record.get("status") != "finished" or not adapter.is_file():
        raise ExportError(f"{run_dir}: training is not finished (status {record.get('status')!r}, "
                          f"final student {'present' if adapter.is_file() else 'missing'} at {adapter}); "
                          "finish it with `bench train --run-dir RUN --resume`")
    cfg = config_from_dict(record["config"])
    allowed = FORMATS_BY_TEACHER.get(cfg.teacher, ())
    if fmt not in allowed:
        raise ExportError(f"format {fmt!r} does not fit the {cfg.teacher!r} teacher; it exports as {' or '.join(allowed)}")
    if not merge and fmt != "diffusers":
        raise ExportError("--no-merge applies to --format diffusers only (lvdm holds the merged UNet; lora is the adapter alone)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not an empty folder; choose another or remove it")
    return ExportPlan(run_dir, record, cfg, fmt, out, merge)


def export_run(run_dir: str | Path, fmt: str, out: str | Path, merge: bool = True, device: str = "cpu",
               progress: Callable[[str], None] | None = None) -> Path:
    """Export the finished run `run_dir` as `fmt` into the new folder `out`; returns `out`."""
    from bench.runs import load_run_student

    import torch

    plan = plan_export(run_dir, fmt, out, merge)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ExportError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    say = progress or (lambda message: None)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.out.with_name(f".{plan.out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        say("loading the teacher and the student")
        teacher, student, cfg = load_run_student(plan.run_dir, device=device, merge=plan.merge and fmt != "lora")
        say(f"writing {fmt}")
        if fmt == "diffusers":
            files = write_diffusers(teacher, student, tmp, merged=plan.merge)
        elif fmt == "lvdm":
            files = write_lvdm(teacher, student, cfg, tmp)
        else:
            files = write_peft_adapter(teacher, student, tmp)
        facts = export_facts(plan, teacher, student, files)
        (tmp / RECORD_NAME).write_text(json.dumps(facts, indent=2, sort_keys=True, allow_nan=False) + "\n")
        (tmp / CARD_NAME).write_text(model_card(facts))
        if plan.out.exists():
            plan.out.rmdir()  # checked empty by plan_export
        os.replace(tmp, plan.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return plan.out


# --- sampling settings ------------------------------------------------------------------------


def sampling_settings(teacher: Any, student: Any) -> dict:
    """The harness's student sampler (`bench generate` defaults), exactly."""
    from bench.generate import DEFAULT_STUDENT_GUIDANCE, DEFAULT_STUDENT_STEPS, LCM_ORIGIN_STEPS
    from t2v_turbo_core.lora import w_projection_parameters
    from t2v_turbo_core.schedule import lcm_timesteps

    w_dim = next(int(p.shape[-1]) for n, p in w_projection_parameters(student).items() if n.endswith("weight"))
    T = teacher.schedule.num_train_timesteps
    return {
        "steps": DEFAULT_STUDENT_STEPS,
        "timesteps": lcm_timesteps(DEFAULT_STUDENT_STEPS, LCM_ORIGIN_STEPS, T, "strided"),
        "timestep_spacing": "strided",
        "timesteps_linspace_spacing": lcm_timesteps(DEFAULT_STUDENT_STEPS, LCM_ORIGIN_STEPS, T, "linspace"),
        "lcm_origin_steps": LCM_ORIGIN_STEPS,
        "num_train_timesteps": T,
        "guidance_scale": DEFAULT_STUDENT_GUIDANCE,
        "guidance_embedding_dim": w_dim,
        "cfg": False,
        "nfe": DEFAULT_STUDENT_STEPS,
        "sigma_data": 0.5,
        "timestep_scaling": 10.0,
        "num_frames": teacher.num_frames,
        "height": teacher.height,
        "width": teacher.width,
        "fps": teacher.fps,
        "latent_shape": list(teacher.latent_shape(1)),
        "unet_kwargs": dict(teacher.unet_kwargs),
    }


# --- diffusers ------------------------------------------------------------------------------


def lcm_scheduler_for(schedule: Any):
    """An LCMScheduler whose training betas are the teacher's (checked, not assumed)."""
    import torch
    from diffusers import LCMScheduler

    from bench.generate import LCM_ORIGIN_STEPS

    ac = schedule.alphas_cumprod.double()
    betas = 1 - ac / torch.cat([torch.ones(1, dtype=ac.dtype), ac[:-1]])
    # The table holds float32 products, so the end beta read back from it is a few ulps off:
    # the shortest decimal (0.00085, 0.012 for every teacher here) whose schedule matches wins.
    for digits in range(2, 9):
        start, end = (float(f"{float(b):.{digits}g}") for b in (betas[0], betas[-1]))
        scheduler = LCMScheduler(
            num_train_timesteps=len(ac), beta_start=start, beta_end=end, beta_schedule="scaled_linear",
            original_inference_steps=LCM_ORIGIN_STEPS, clip_sample=False, set_alpha_to_one=True,
            prediction_type="epsilon", timestep_scaling=10.0,
        )
        if torch.allclose(scheduler.alphas_cumprod.double(), ac, rtol=1e-6, atol=0):
            return scheduler
    raise ExportError("the teacher's noise schedule is not scaled-linear; diffusers' LCMScheduler cannot express it")


def _diffusers_unet(student: Any) -> Any:
    """The student as a diffusers model class that `from_pretrained` rebuilds completely."""
    from diffusers import UNet3DConditionModel

    from bench.tinyworld.unet3d import TinyWorldUNet3DConditionModel

    state = student.state_dict()
    has_bias = any(k.endswith("pos_embed.weight") for k in state)
    cls = TinyWorldUNet3DConditionModel if has_bias else type(student)
    if not issubclass(cls, UNet3DConditionModel):
        raise ExportError(f"the student's UNet is a {type(student).__name__}, not a diffusers UNet3DConditionModel")
    config = {k: v for k, v in dict(student.config).items() if not k.startswith("_")}
    unet = cls.from_config(config)
    unet.load_state_dict(state, strict=True)
    dtype = next(student.parameters()).dtype
    return (unet if next(unet.parameters()).dtype == dtype else unet.to(dtype)).eval()


def write_diffusers(teacher: Any, student: Any, out: Path, merged: bool = True) -> list[str]:
    """A TextToVideoSDPipeline folder; merged=False: unet/ is the teacher's UNet (w projection
    zero, so it computes the teacher's function) and unet_lora/ the student's peft adapter."""
    from diffusers import TextToVideoSDPipeline

    from t2v_turbo_core.models import TransformersTextEncoder

    if not isinstance(teacher.text_encoder, TransformersTextEncoder):
        raise ExportError(f"the {teacher.name!r} teacher's text encoder is not a transformers model; diffusers cannot hold it")
    unet = _diffusers_unet(student if merged else teacher.make_student(None))
    vae = teacher.vae.vae
    if float(vae.config.scaling_factor) != teacher.vae.scaling_factor:
        # The tiny zoo keeps its VAE's scale in zoo.json: diffusers reads it from vae/config.json.
        # (Private keys dropped: `_use_default_values` would reset scaling_factor to its default.)
        config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
        rescaled = type(vae).from_config({**config, "scaling_factor": teacher.vae.scaling_factor})
        rescaled.load_state_dict(vae.state_dict(), strict=True)
        vae = rescaled if next(rescaled.parameters()).dtype == next(vae.parameters()).dtype else rescaled.to(next(vae.parameters()).dtype)
    tokenizer = teacher.text_encoder.tokenizer
    # TextToVideoSDPipeline pads prompts to the tokenizer's model_max_length: the harness's length.
    tokenizer.model_max_length = teacher.text_encoder.max_length
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=teacher.text_encoder.text_model, tokenizer=tokenizer, unet=unet,
                                 scheduler=lcm_scheduler_for(teacher.schedule))
    pipe.save_pretrained(str(out), safe_serialization=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if not merged:
        files += [f"{UNMERGED_ADAPTER_DIR}/{f}" for f in write_peft_adapter(teacher, student, out / UNMERGED_ADAPTER_DIR)]
    return files


# --- lvdm -----------------------------------------------------------------------------------


def lvdm_unet_state_dict(student: Any) -> dict:
    """The merged VideoCrafter2 student's weights under LVDM's UNetModel names."""
    from t2v_turbo_core.lora import W_PROJECTION_SUFFIX

    out = {}
    for key, value in student.state_dict().items():
        if "lora_" in key:
            raise ExportError(f"unmerged LoRA weight in the student ({key})")
        head, _, rest = key.partition(".")
        out[f"{LVDM_W_PROJECTION}.{rest}" if head == W_PROJECTION_SUFFIX else key] = value.detach().cpu().contiguous()
    return out


def teacher_checkpoint(cfg: Any) -> Path:
    """Where the run's VideoCrafter2 model.ckpt is (the same lookup as training)."""
    from bench.weights import resolve_weights, teacher_requirements

    required = teacher_requirements(cfg.teacher)
    paths = resolve_weights(required, explicit={n: cfg.weights[n] for n in required if cfg.weights.get(n)})
    (name,) = required
    return Path(paths[name])


def write_lvdm(teacher: Any, student: Any, cfg: Any, out: Path) -> list[str]:
    """model.ckpt (teacher checkpoint with the student UNet) and unet.pt (the UNet alone)."""
    import torch

    from t2v_turbo_core.teachers import load_torch_checkpoint

    source = teacher_checkpoint(cfg)
    raw = load_torch_checkpoint(source)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    unet = lvdm_unet_state_dict(student)
    old_keys = {k[len(LVDM_UNET_PREFIX):] for k in state if k.startswith(LVDM_UNET_PREFIX)}
    new_keys = set(unet) - {f"{LVDM_W_PROJECTION}.weight"}
    if old_keys != new_keys:
        raise ExportError(f"the student's UNet keys differ from {source}'s: {sorted(old_keys ^ new_keys)[:5]}")
    merged = {k: v for k, v in state.items() if not k.startswith(LVDM_UNET_PREFIX)}
    merged.update({LVDM_UNET_PREFIX + k: v for k, v in unet.items()})
    torch.save({"state_dict": merged}, out / "model.ckpt")
    torch.save(unet, out / "unet.pt")
    return ["model.ckpt", "unet.pt"]


# --- lora (peft) ----------------------------------------------------------------------------


def _w_projection_weights(student: Any) -> dict[str, Any]:
    """module name -> the w projection's effective weight. With w_proj_init "released" the
    projection is a frozen random matrix with a LoRA on it: saved merged, W0 + scale * B A."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from t2v_turbo_core.lora import W_PROJECTION_SUFFIX

    out = {}
    for name, module in student.named_modules():
        if name.split(".")[-1] != W_PROJECTION_SUFFIX:
            continue
        if isinstance(module, BaseTunerLayer):
            weight = module.get_base_layer().weight + module.get_delta_weight("default")
        else:
            weight = module.weight
        out[name] = weight.detach()
    return out


def write_peft_adapter(teacher: Any, student: Any, out: Path) -> list[str]:
    """peft's adapter files for the teacher's UNet (with its w projection input added)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    source = student.peft_config["default"]
    w_weights = _w_projection_weights(student)
    w_modules = sorted(w_weights)
    # LoRA targets: every adapted layer but the w projection, which peft saves whole.
    targets = [n for n, m in student.named_modules() if isinstance(m, BaseTunerLayer) and n not in w_weights]
    config = LoraConfig(r=source.r, lora_alpha=source.lora_alpha, lora_dropout=source.lora_dropout,
                        target_modules=f"^({'|'.join(n.replace('.', '[.]') for n in targets)})$",
                        modules_to_save=w_modules, init_lora_weights=True)
    base = teacher.make_student(None)  # the teacher's weights, w projection input added (zero)
    model = get_peft_model(base, config)
    params = dict(model.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, value in student.named_parameters():
            if "lora_" in name and not any(name.startswith(m + ".") for m in w_modules):
                params[f"base_model.model.{name}"].copy_(value)
                copied += 1
        for module, weight in w_weights.items():
            params[f"base_model.model.{module}.modules_to_save.default.weight"].copy_(weight)
            copied += 1
    expected = sum(1 for n in params if "lora_" in n or ".modules_to_save." in n)
    if copied != expected:
        raise ExportError(f"adapter mismatch: copied {copied} of {expected} adapter tensors")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


# --- model card -----------------------------------------------------------------------------


def _scores(run_dir: Path) -> list[dict]:
    """Every score folder of the run (bench score / bench ablate): label, benchmark, values."""
    found = []
    for summary in sorted((run_dir / "scores").glob("*/summary.json")):
        try:
            values = json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(values, dict):
            continue
        scoring = summary.parent / "bench_scoring.json"
        bench_name = "vbench"
        if scoring.is_file():
            try:
                bench_name = json.loads(scoring.read_text()).get("benchmark", "vbench")
            except (OSError, json.JSONDecodeError, AttributeError):
                pass
        clean = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if clean:
            entry = {"label": summary.parent.name, "benchmark": bench_name, "dimensions": clean}
            try:
                from bench.report import composite_scores

                composites = composite_scores(clean, bench_name)  # None unless all 16 dimensions are there
            except ValueError:
                composites = None
            if composites:
                entry["composites"] = {k: float(v) for k, v in composites.items()}
            found.append(entry)
    return found


def _generation_seeds(run_dir: Path) -> dict[str, int]:
    seeds = {}
    for gen in sorted((run_dir / "videos").glob("*/generation.json")):
        try:
            seed = json.loads(gen.read_text()).get("seeds", {}).get("base_seed")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(seed, int):
            seeds[gen.parent.name] = seed
    return seeds


def export_facts(plan: ExportPlan, teacher: Any, student: Any, files: list[str]) -> dict:
    cfg, record = plan.cfg, plan.record
    rewards = {}
    if cfg.uses_image_reward:
        rewards["image"] = {"model": cfg.rm_img, "beta": cfg.beta_img, "frames": cfg.image_reward_frames}
    if cfg.uses_video_reward:
        rewards["video"] = {"model": cfg.rm_vid, "beta": cfg.beta_vid, "frames": cfg.video_reward_frames}
    return {
        "format": plan.fmt,
        "merged": plan.merge if plan.fmt == "diffusers" else plan.fmt == "lvdm",
        "run": str(plan.run_dir),
        "teacher": cfg.teacher,
        "variant": cfg.variant,
        "reward_models": rewards,
        "training": {
            "steps": int(record.get("steps", cfg.steps)), "seed": cfg.seed, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha if cfg.lora_alpha is not None else cfg.lora_rank,
            "skip": cfg.skip, "w_range": [cfg.w_min, cfg.w_max], "loss": cfg.loss_type, "target": cfg.target,
            "ema_decay": cfg.ema_decay, "train_seconds": record.get("train_seconds"),
        },
        "generation_seeds": _generation_seeds(plan.run_dir),
        "scores": _scores(plan.run_dir),
        "sampling": sampling_settings(teacher, student),
        "git": record.get("git", {}),
        "files": sorted(files),
    }


def _usage(facts: dict) -> str:
    s = facts["sampling"]
    ts = s["timesteps"]
    if facts["format"] == "diffusers":
        lora_line = (f'pipe.unet = PeftModel.from_pretrained(pipe.unet, f"{{DIR}}/{UNMERGED_ADAPTER_DIR}").eval()  # --no-merge: '
                     "the student's adapter onto the teacher's UNet\n") if not facts["merged"] else ""
        tiny = facts["teacher"] == "tiny"
        extra = ("The UNet is `bench.tinyworld.unet3d.TinyWorldUNet3DConditionModel` (diffusers' UNet3DConditionModel plus the "
                 "tiny world's learned spatial position bias, which diffusers has no option for): loading needs the `bench` "
                 "package installed, and its module imported first (diffusers imports no module a folder names).\n\n") if tiny else ""
        import_line = "import bench.tinyworld.unet3d  # the tiny world's UNet class, named in model_index.json\n" if tiny else ""
        if lora_line:
            import_line += "from peft import PeftModel\n"
        return f"""## Using it with diffusers

{extra}`TextToVideoSDPipeline.from_pretrained(DIR)` loads the folder. Its own `__call__` cannot sample this student:
it does not pass the embedded guidance scale to the UNet (`timestep_cond`), and with CFG it would spend two
network calls per step. The student's sampler is these few lines of diffusers calls; with the seed that
`bench generate` recorded for a video (`seed` in its `manifest.jsonl`) they give that video:

```python
import torch
from diffusers import LatentConsistencyModelPipeline, TextToVideoSDPipeline
{import_line}
DIR, prompt, seed = "path/to/this/folder", "a prompt", 0
frames, height, width = {s['num_frames']}, {s['height']}, {s['width']}
pipe = TextToVideoSDPipeline.from_pretrained(DIR)
{lora_line}pipe.scheduler.set_timesteps(timesteps={ts})
text, _ = pipe.encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)
# w = {s['guidance_scale']} itself: T2V-Turbo embeds w; diffusers' LCM pipelines embed guidance_scale - 1.
w_emb = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor([{s['guidance_scale']}]), embedding_dim={s['guidance_embedding_dim']})
generator = torch.Generator().manual_seed(seed)
shape = (1, pipe.unet.config.in_channels, frames, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
latents = torch.randn(shape, generator=generator)
with torch.no_grad():
    for t in pipe.scheduler.timesteps:
        eps = pipe.unet(latents, t, encoder_hidden_states=text, timestep_cond=w_emb).sample
        latents = pipe.scheduler.step(eps, t, latents, generator=generator).prev_sample
    video = (pipe.decode_latents(latents) / 2 + 0.5).clamp(0, 1)  # [1, 3, frames, H, W]
```

* Timesteps: `set_timesteps(timesteps={ts})` gives the harness's strided LCM schedule. The scheduler's own
  `set_timesteps({s['steps']})` picks {s['timesteps_linspace_spacing']} (diffusers' linspace rule since v0.26; the harness's
  `--timestep-spacing linspace`).
* The scheduler is given the whole `[B, C, F, h, w]` latent (not frame by frame as
  `TextToVideoSDPipeline.__call__` reshapes it), so its re-noising draws the same numbers as the harness.
"""
    if facts["format"] == "lvdm":
        return f"""## Using it with the released T2V-Turbo code (LVDM)

* `unet.pt`: the merged UNet's state dict under LVDM's `UNetModel` names, the w projection as
  `{LVDM_W_PROJECTION}.weight`. The released `app.py` loads a UNet file whose name does not contain "lora" with
  `unet.load_state_dict(torch.load(path))` into the UNet built from `configs/inference_t2v_512_v2.0.yaml` with
  `time_cond_proj_dim: 256`: `python app.py --version v1 --unet_dir unet.pt --base_model_dir <VideoCrafter2 model.ckpt>`
  (v1: the v2 UNet adds a motion projection that this student does not have).
* `model.ckpt`: VideoCrafter2's checkpoint (`{{"state_dict": ...}}`) with `model.diffusion_model.*` replaced by the
  student (and `{LVDM_UNET_PREFIX}{LVDM_W_PROJECTION}.weight` added); every other tensor is the teacher's
  checkpoint's, unchanged. It loads into a LatentDiffusion built from the same yaml with `time_cond_proj_dim: 256`.
* Sample with the T2V-Turbo scheduler: {s['steps']} steps over {ts} (`lcm_origin_steps={s['lcm_origin_steps']}`),
  `guidance_scale={s['guidance_scale']}` (embedded, no CFG), fps {s['fps']}.
"""
    w_note = ("(the harness's VideoCrafter2 UNet names it `cond_proj`; LVDM's UNetModel calls the same layer "
              f"`{LVDM_W_PROJECTION}`: rename it in adapter_config.json's `modules_to_save` and the safetensors key to use LVDM's class)"
              if facts["teacher"] == "vc2" else "(diffusers: `time_embedding.cond_proj`)")
    base = {
        "ms": 'UNet3DConditionModel.from_pretrained("<text-to-video-ms-1.7b>/unet", time_cond_proj_dim=256, low_cpu_mem_usage=False)',
        "tiny": "the tiny teacher's UNet3DConditionModel (+ position bias) rebuilt with `time_cond_proj_dim=256`",
        "vc2": "the VideoCrafter2 UNet built with `time_cond_proj_dim=256`",
    }[facts["teacher"]]
    return f"""## Using it with peft

The adapter is LoRA (rank {facts['training']['lora_rank']}, alpha {facts['training']['lora_alpha']}) on every Linear and
Conv layer of the teacher's UNet, plus the trained w projection saved whole (`modules_to_save`) {w_note}. The base
model is the teacher's UNet with a {s['guidance_embedding_dim']}-d w projection input, e.g. {base}; the projection's
initial value does not matter (the adapter's copy replaces it):

```python
from peft import PeftModel
student = PeftModel.from_pretrained(base_unet, DIR).eval()   # or .merge_and_unload()
```

Sample with {s['steps']} LCM steps over {ts} and the embedded guidance scale w = {s['guidance_scale']} fed as
`timestep_cond` ({s['guidance_embedding_dim']}-d sinusoidal embedding of 1000 w), no CFG.
"""


def model_card(facts: dict) -> str:
    s, tr = facts["sampling"], facts["training"]
    rewards = facts["reward_models"]
    reward_lines = "\n".join(f"  * {kind}-text reward: {r['model']} (beta = {r['beta']}, {r['frames'] or 'its own number of'} frames)"
                             for kind, r in rewards.items()) or "  * none (consistency distillation only)"
    score_lines = []
    for sc in facts["scores"]:
        dims = ", ".join(f"{k} {v:.4f}" for k, v in sorted(sc["dimensions"].items()))
        comp = "".join(f"{k.replace('_score', '').title()} {100 * v:.2f}%; " for k, v in sc.get("composites", {}).items())
        score_lines.append(f"* `{sc['label']}` ({sc['benchmark']}): {comp}{dims}")
    scores = "\n".join(score_lines) or "* none yet (the run has no scores/ folder; `bench score` or `bench ablate` makes them)"
    seeds = ", ".join(f"{k}: {v}" for k, v in facts["generation_seeds"].items()) or "none yet"
    extra = ", ".join(f"{k}={v}" for k, v in s["unet_kwargs"].items())
    return f"""# T2V-Turbo student: {Path(facts['run']).name}

Exported by `bench export --format {facts['format']}` from the run `{facts['run']}`.

* Teacher: {TEACHER_NAMES.get(facts['teacher'], facts['teacher'])}
* Variant: {VARIANT_NAMES.get(facts['variant'], facts['variant'])}
* LoRA: {'merged into the UNet' if facts['merged'] else 'not merged'}; rank {tr['lora_rank']}, alpha {tr['lora_alpha']}

## Training

* Steps: {tr['steps']}, batch size {tr['batch_size']}, lr {tr['lr']}, seed {tr['seed']}
* Consistency distillation: skip k = {tr['skip']}, w ~ U{tr['w_range']}, {tr['loss']} loss, target {tr['target']} (EMA decay {tr['ema_decay']})
* Reward models:
{reward_lines}

## Scores the run has

{scores}

Generation base seeds of the run's video folders: {seeds}.

## Sampling settings (the harness's, exactly)

* {s['steps']} steps, timesteps {s['timesteps']} (strided LCM spacing over a {s['lcm_origin_steps']}-step origin grid of {s['num_train_timesteps']} training steps)
* Embedded guidance scale w = {s['guidance_scale']} ({s['guidance_embedding_dim']}-d sinusoidal embedding of 1000 w, `timestep_cond`); no CFG: {s['nfe']} network evaluations per video
* Boundary condition: sigma_data {s['sigma_data']}, timestep scaling {s['timestep_scaling']} (diffusers' LCMScheduler defaults)
* {s['num_frames']} frames at {s['width']}x{s['height']}, latents {s['latent_shape'][1:]}, written at {s['fps']} fps{'; UNet extra inputs: ' + extra if extra else ''}
* Noise: a CPU `torch.Generator` per video, the initial latents then one draw per re-noising, each over the whole `[1, C, F, h, w]` latent

{_usage(facts)}
Files: {', '.join(f'`{f}`' for f in facts['files'])}, `{RECORD_NAME}` (these facts as JSON).
"""


# --- CLI ------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        run: Path = typer.Argument(..., help="A finished training run directory (runs/<run>/)."),
        fmt: str = typer.Option(..., "--format", help="diffusers (ms, tiny) | lvdm (vc2) | lora (any teacher: peft adapter)."),
        out: Path = typer.Option(..., "--out", help="New folder to write (must not exist, or be empty)."),
        no_merge: bool = typer.Option(False, "--no-merge", help="diffusers: the teacher's UNet in unet/ and the student as a peft adapter in unet_lora/, instead of the merged UNet."),
        device: str = typer.Option("cpu", "--device", help="Where the weights are merged (cpu, cuda)."),
    ) -> None:
        """Export a trained student: a diffusers pipeline folder, an LVDM checkpoint or a peft adapter, with a model card.

        Examples:
          bench export runs/ms-run --format diffusers --out exports/ms-turbo
          bench export runs/vc2-run --format lvdm --out exports/vc2-turbo
          bench export runs/tiny-run --format lora --out exports/tiny-lora
        """
        from rich.console import Console

        console = Console(stderr=True)
        # An ExportError (or a missing file) goes to bench's one handler (bench/console.py): exit 2.
        path = export_run(run, fmt, out, merge=not no_merge, device=device, progress=lambda m: console.print(f"[dim]{m}[/]"))
        console.print(f"[green]exported[/] {fmt}: {path} (model card: {path / CARD_NAME})")
