"""`bench train`: train one ablation variant (VCM, VCM+R_img, VCM+R_vid, T2V-Turbo).

The recipe around `t2v_turbo_core.distillation.ConsistencyDistiller`: build the teacher and
student from a config, load the reward models the variant needs, draw batches, step the
optimiser through `accelerate` (one process, or DDP over several, CPU or GPU), log every loss
term, checkpoint, resume. Checkpoints hold only what training changes (LoRA, w projection,
EMA, optimiser, step, RNG), never the frozen teacher, so they are small at any model size.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import typer

from t2v_turbo_core.safe_io import atomic_write_text
from bench.errors import INPUT_ERROR, RUN_FAILED, BenchError
from bench.config import TrainConfig, config_to_dict, load_config
from bench.runs import read_run, run_record, student_adapter_path, write_json_atomic
from bench.validate import check_device, json_safe

# `skipped`: training videos skipped so far (missing, corrupt or too short; all processes).
LOG_COLUMNS = ("step", "seconds", "lr", "loss", "loss_cd", "loss_reward", "reward_img", "reward_vid", "grad_norm", "skipped")


class TrainingError(BenchError, RuntimeError):
    """A training failure; `code` is the exit status (1: the run failed, 2: bad input)."""

    code = RUN_FAILED


class TrainingDataError(TrainingError):
    """The training data cannot be read (bad input: exit code 2)."""

    code = INPUT_ERROR


class MissingOptionalPackage(TrainingError):
    """A config value needs a package that is not installed (bad input for this machine: exit 2)."""

    code = INPUT_ERROR


# --- data -------------------------------------------------------------------------------


class TinyWorldBatches:
    """Clips of the tiny world rendered on the fly, a pure function of (seed, step, rank).

    The tiny benchmark's exact prompts are held out, as for the teacher. Resuming at step s
    therefore sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, teacher, seed: int, rank: int):
        from bench.tinyworld.suite import held_out_prompts

        self.teacher = teacher
        self.seed = seed
        self.rank = rank
        self.held_out = held_out_prompts()

    @torch.no_grad()
    def __call__(self, step: int, batch_size: int, device) -> tuple[torch.Tensor, list[str]]:
        from bench.tinyworld.render import render
        from bench.tinyworld.world import caption, training_scene

        rng = np.random.default_rng([self.seed, 7001, self.rank, step])
        specs = [training_scene(rng, self.held_out) for _ in range(batch_size)]
        video = render(specs).to(device)  # [B, F, 3, H, W] in [0, 1]
        pixels = video.permute(0, 2, 1, 3, 4) * 2 - 1
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        latents = self.teacher.vae.encode(pixels, sample=True, generator=gen)
        return latents, [caption(s) for s in specs]


class VideoFileBatches:
    """Real training data: a WebVid-style caption file decoded by `t2v_turbo_core.data`.

    A video that cannot be used (missing, corrupt, too short for the clip) is skipped, counted
    and named (`num_skipped`, `skipped`: path -> reason, this process) and the next one in the
    step's order takes its place, so one bad file never ends a run.
    """

    def __init__(self, teacher, cfg: TrainConfig, seed: int, rank: int, world: int):
        from t2v_turbo_core.data import VideoCaptionDataset

        data = dict(cfg.data)
        if "annotations" not in data:
            raise TrainingDataError("real teachers need `data.annotations=/path/to/captions.csv` (see docs/real-checkpoints.md, Training data)")
        try:
            # `data.fps=8` from the command line arrives as a string.
            fps = float(data["fps"]) if data.get("fps") is not None else teacher.fps
        except (TypeError, ValueError) as err:
            raise TrainingDataError(f"data.fps={data['fps']!r} is not a number") from err
        try:
            self.dataset = VideoCaptionDataset(
                data["annotations"], video_root=data.get("video_root"), num_frames=teacher.num_frames,
                height=teacher.height, width=teacher.width, target_fps=fps, seed=seed, on_error="skip",
            )
        except (OSError, ValueError) as err:  # missing or unreadable caption file, missing columns
            raise TrainingDataError(f"data.annotations: {err}") from err
        if len(self.dataset) == 0:
            raise TrainingDataError(f"{data['annotations']}: no videos listed")
        self.annotations = data["annotations"]
        self.teacher, self.seed, self.rank, self.world = teacher, seed, rank, world

    @property
    def num_skipped(self) -> int:
        return self.dataset.num_skipped

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.dataset.skipped)

    @torch.no_grad()
    def __call__(self, step: int, batch_size: int, device) -> tuple[torch.Tensor, list[str]]:
        rng = np.random.default_rng([self.seed, 7002, step])
        order = rng.permutation(len(self.dataset))
        videos, captions, i = [], [], (step * self.world + self.rank) * batch_size
        failed_in_a_row = 0
        while len(videos) < batch_size:
            item = self.dataset[int(order[i % len(order)])]  # None: skipped and counted by the dataset
            i += 1
            if item is None:
                failed_in_a_row += 1
                if failed_in_a_row >= len(order):
                    raise TrainingError(f"none of the {len(order)} videos of {self.annotations} can be used "
                                        f"(missing, corrupt or too short; see the warnings above)")
                continue
            failed_in_a_row = 0
            videos.append(item["pixels"])
            captions.append(item["caption"])
        pixels = torch.stack(videos).to(device)  # [B, 3, F, H, W] in [-1, 1]
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)) + self.rank)
        return self.teacher.vae.encode(pixels, sample=True, generator=gen), captions


# --- reward models ----------------------------------------------------------------------


def load_rewards(cfg: TrainConfig, device) -> tuple[Any, Any]:
    """(image-text reward, video-text reward) that the variant uses; None where it uses none."""
    if not (cfg.uses_image_reward or cfg.uses_video_reward):
        return None, None
    if cfg.teacher == "tiny":
        from bench.tinyworld.zoo import load_tiny_rewards

        rms = load_tiny_rewards(cfg.weights.get("tiny_zoo"), device=device)
        image = rms["image"] if cfg.uses_image_reward else None
        video = rms[cfg.rm_vid] if cfg.uses_video_reward else None
        return image, video
    from bench.components import load_real_rewards

    return load_real_rewards(cfg, device=device)


# --- checkpoints --------------------------------------------------------------------------


def make_distiller(cfg: TrainConfig, teacher, student, image_rm, video_rm):
    """Algorithm 1 for `student` as `cfg` sets it up (the benchmark times this same object)."""
    from t2v_turbo_core.distillation import ConsistencyDistiller

    # A LoRA student runs the teacher as itself with the adapters disabled (one UNet in
    # memory); a fully fine-tuned one (no adapters) needs the separate frozen teacher UNet.
    has_adapters = any("lora_" in name for name, _ in student.named_parameters())
    return ConsistencyDistiller(
        student, teacher.schedule, teacher.text_encoder([""]), cfg.distillation_config(), vae=teacher.vae,
        image_reward=image_rm, video_reward=video_rm, unet_kwargs=teacher.unet_kwargs,
        teacher=None if has_adapters else teacher.unet,
    )


def make_optimizer(cfg: TrainConfig, params: list):
    """AdamW, or bitsandbytes' 8-bit AdamW (the released code's) where it is installed."""
    kwargs = dict(lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw8bit":
        return _bitsandbytes().optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def _bitsandbytes():
    try:
        import bitsandbytes  # optional, never a dependency of this project
    except ImportError as err:
        raise MissingOptionalPackage(
            f"optimizer=adamw8bit needs bitsandbytes, which is not installed ({err}); "
            "`pip install bitsandbytes` (CUDA) or use optimizer=adamw"
        ) from err
    return bitsandbytes


def enable_student_checkpointing(student) -> None:
    """Gradient checkpointing of the student UNet (grad_checkpointing=true): memory for time."""
    from t2v_turbo_core.models import enable_gradient_checkpointing

    if not enable_gradient_checkpointing(student):
        raise TrainingError(f"grad_checkpointing=true: {type(student).__name__} has no gradient checkpointing")


def _checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    # `step-N.tmp` (a checkpoint being written when the process was killed) is not one.
    done = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / "state.json").is_file()] if root.is_dir() else []
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def sharded_engine(accelerator) -> bool:
    """Whether accelerate shards the student (FSDP, DeepSpeed ZeRO: bench/configs/accelerate/)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def save_checkpoint(run_dir: Path, step: int, student, optimizer, distiller, accelerator, keep: int, elapsed: float,
                    extra: dict | None = None) -> Path:
    """Written to a temp folder and renamed, so a kill never leaves a half checkpoint."""
    from t2v_turbo_core.lora import save_student

    final = run_dir / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    # FSDP / DeepSpeed: the student's full weights are gathered by every process (a collective);
    # the optimiser state stays sharded and is not written (such runs do not resume).
    gathered = accelerator.get_state_dict(student) if sharded_engine(accelerator) else None
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_student(accelerator.unwrap_model(student), tmp / "student.safetensors", state=gathered)
        if gathered is None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if distiller.ema is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in distiller.ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    accelerator.wait_for_everyone()
    torch.save({"torch": torch.get_rng_state()}, tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "state.json").write_text(json.dumps({"step": step, "elapsed": elapsed, "world": accelerator.num_processes, **(extra or {})},
                                                   allow_nan=False))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in _checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(ckpt: Path, student, optimizer, distiller, accelerator) -> tuple[int, float]:
    from t2v_turbo_core.lora import load_student

    from t2v_turbo_core.safe_io import WeightsFileError, load_safetensors, load_torch

    try:
        load_student(accelerator.unwrap_model(student), ckpt / "student.safetensors")
        optimizer.load_state_dict(load_torch(ckpt / "optimizer.pt", map_location="cpu"))
        if distiller.ema is not None:
            distiller.ema.load_state_dict(load_safetensors(ckpt / "ema.safetensors"))
        rng = ckpt / f"rng-{accelerator.process_index}.pt"
        if rng.is_file():
            torch.set_rng_state(load_torch(rng)["torch"])
        state = json.loads((ckpt / "state.json").read_text())
    except (WeightsFileError, ValueError) as err:  # ValueError: JSONDecodeError, or an adapter of another shape
        raise TrainingError(f"checkpoint {ckpt} is damaged ({err}); delete that folder to resume from the one "
                            "before it (or from step 0)", code=2) from None
    return int(state["step"]), float(state.get("elapsed", 0.0))


# --- the recipe ---------------------------------------------------------------------------


def default_run_name(cfg: TrainConfig) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    rm = f"-{cfg.rm_vid}" if cfg.uses_video_reward else ""
    return f"{cfg.teacher}-{cfg.variant.replace('+', '_')}{rm}-{stamp}"


def train(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: Any = None,
    on_step: Callable[[int, dict], None] | None = None,
    device: str | None = None,
    tracker: str = "tensorboard",
    tracker_dir: Path | None = None,
    shared_steps: Path | None = None,
) -> dict:
    """Train one variant into `run_dir`; returns a summary. Resumable; multi-process via accelerate.

    tracker: where the training curves also go (tensorboard | wandb | none; `open_tracker`);
    tracker_dir: the TensorBoard log directory (default RUN/tensorboard).
    shared_steps: a folder where runs on the same tiny-world batches share each step's batch,
    text and teacher pass (`bench.step_cache`; `bench ablate` passes one). The training is bit
    for bit the same with or without it; other data sources and v2 ignore it.
    """
    from accelerate import Accelerator

    from t2v_turbo_core.lora import save_student, trainable_parameters

    cfg.validate()
    check_tracker(tracker)
    if cfg.optimizer == "adamw8bit":
        _bitsandbytes()  # before anything is loaded or written
    accelerator = Accelerator(cpu=(device == "cpu"), mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no")
    rank, world = accelerator.process_index, accelerator.num_processes
    if sharded_engine(accelerator):
        # FSDP / ZeRO (v2's full fine-tuning of a large UNet): the online target, as the released
        # script (no target network: an EMA copy would be another full UNet, unsharded), and no
        # resume (the optimiser state is sharded; checkpoints hold the gathered student only).
        if cfg.target == "ema":
            raise TrainingError("target=ema under FSDP / DeepSpeed: use target=online (the released v2 full "
                                "fine-tuning has no target network)", code=2)
        if resume:
            raise TrainingError("--resume under FSDP / DeepSpeed is not supported (the optimiser state is sharded "
                                "and not checkpointed); start a new run", code=2)
    run_dir = Path(run_dir)
    run_json = run_dir / "run.json"
    checkpoints = _checkpoint_dirs(run_dir)
    if run_json.is_file() and not resume:
        raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-dir", code=2)
    if resume:
        if not run_json.is_file():
            raise TrainingError(f"--resume: {run_dir} has no run.json, so there is no run to resume; "
                                "start it without --resume", code=2)
        from bench.config import config_from_dict

        # Keys added since the run was made take their defaults, as the run itself did.
        previous = config_to_dict(config_from_dict(read_run(run_dir)["config"]))
        if previous != config_to_dict(cfg):
            changed = sorted(k for k in previous if previous.get(k) != config_to_dict(cfg).get(k))
            raise TrainingError(f"--resume: the config differs from the run's ({', '.join(changed)}); resume with the same config", code=2)
    torch.manual_seed(cfg.seed + rank)
    from bench.runs import load_teacher

    # Components first: a missing weight file must not leave a half-made run directory behind.
    teacher = load_teacher(cfg, device=accelerator.device)
    from bench import v2

    # LoRA adapters, or the whole UNet (v2.finetune=full: `make_student(None)`, a separate copy).
    student = teacher.make_student(v2.student_lora(cfg)).to(accelerator.device)

    v2.prepare_student(cfg, student)  # T2V-Turbo-v2: the motion-condition input (no-op for v1)
    # Trainable weights stay fp32 whatever the teacher's dtype (bf16 only through autocast).
    for p in student.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if cfg.grad_checkpointing:
        enable_student_checkpointing(student)
    image_rm, video_rm = load_rewards(cfg, accelerator.device)
    image_rm = v2.image_reward(cfg, image_rm, accelerator.device)  # v2: HPSv2.1 + CLIP-H when v2.clip_h_weight > 0
    # The data source too: a wrong caption file must not leave a run directory behind either.
    if v2.enabled(cfg):  # v2 trains from the teacher cache that `bench preprocess` built
        data = v2.CacheBatches(cfg, v2.V2Settings.from_config(cfg), rank, world)
    else:
        data = TinyWorldBatches(teacher, cfg.seed, rank) if cfg.teacher == "tiny" else VideoFileBatches(teacher, cfg, cfg.seed, rank, world)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not run_json.is_file():
            write_json_atomic(run_json, run_record("train", config_to_dict(cfg), {"seed": cfg.seed},
                                                   {"status": "running", "processes": world, "recipe": cfg.recipe()}))
    accelerator.wait_for_everyone()

    distiller = (v2.make_cache_distiller if v2.enabled(cfg) else make_distiller)(cfg, teacher, student, image_rm, video_rm)
    steps_cache = None
    if shared_steps is not None and isinstance(data, TinyWorldBatches):
        from bench.step_cache import SharedSteps, cache_key

        steps_cache = SharedSteps(shared_steps, cache_key(cfg, teacher, distiller.uncond_embedding, rank, world, accelerator.device))
    params = list(trainable_parameters(student).values())
    # v2: the released per-group learning rates (temporal transformers at lr x v2.temporal_lr_scale).
    optimizer = make_optimizer(cfg, v2.optimizer_groups(cfg, student) if v2.enabled(cfg) else params)
    # DDP wraps the student (FSDP / ZeRO shard it); the distiller keeps calling the wrapped module.
    student, optimizer = accelerator.prepare(student, optimizer)
    distiller.student = student

    step, elapsed = 0, 0.0
    # Videos skipped before the checkpoint a resume starts from (the steps after it are redone).
    skipped_before: dict = {"count": 0, "files": {}}
    if resume and checkpoints:
        step, elapsed = load_checkpoint(checkpoints[-1], student, optimizer, distiller, accelerator)
        skipped_before = json.loads((checkpoints[-1] / "state.json").read_text()).get("skipped_videos", skipped_before)
    log_path = run_dir / "train_log.csv"
    if accelerator.is_main_process and step == 0 and log_path.exists():
        log_path.unlink()  # a fresh start (no checkpoint yet): no stale rows
    elif accelerator.is_main_process and log_path.exists():
        # Rows logged after the checkpoint and before the kill are logged again from here.
        truncate_log(log_path, step)
    curves = open_tracker(tracker, run_dir, run_dir.name, tracker_dir, step, config_to_dict(cfg)) if accelerator.is_main_process else None
    curve_clock = (time.time(), step)
    task = progress.add_task(run_dir.name, total=cfg.steps, completed=step, info="") if (progress and accelerator.is_main_process) else None
    t0 = time.time() - elapsed
    last: dict[str, float] = {}
    while step < cfg.steps:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.lr_warmup) if cfg.lr_warmup else cfg.lr
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        shared = steps_cache.load(step, accelerator.device) if steps_cache is not None else None
        if shared is not None:  # another variant's job made this step's batch (and teacher pass)
            latents, prompts, text, record = shared
        else:
            latents, prompts = data(step, cfg.batch_size, accelerator.device)
            text = None if v2.enabled(cfg) else teacher.text_encoder(prompts)  # v2: the cache holds the embeddings
            record = None
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step * 1_009 + rank) % (2**31))
        # (v2's cache distiller takes no teacher record: the shared steps are tiny-world v1 only.)
        out = distiller.step(latents, text, prompts, generator=gen, **({} if steps_cache is None else {"teacher_record": record}))
        # Store what this job computed: the whole step, or a teacher pass the read record lacked.
        if steps_cache is not None and (shared is None or (record is None and out.teacher_record is not None)):
            steps_cache.store(step, latents, prompts, text, out.teacher_record)
        # One gather per step for both: is every process's loss finite, how many videos were skipped.
        flags = torch.tensor([1.0 if torch.isfinite(out.loss) else 0.0, float(getattr(data, "num_skipped", 0))],
                             device=accelerator.device)
        flags = accelerator.gather(flags).view(-1, 2)
        skipped = int(skipped_before["count"]) + int(flags[:, 1].sum())
        if flags[:, 0].min() < 1:
            kept = _checkpoint_dirs(run_dir)
            where = f"last good checkpoint: {kept[-1]}" if kept else "no checkpoint was written yet"
            if accelerator.is_main_process:
                _set_status(run_dir, "failed", {"error": f"non-finite loss at step {step}"})
            raise TrainingError(f"non-finite loss ({float(out.loss.detach())}) at step {step}; training stopped, {where}")
        accelerator.backward(out.loss)
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        distiller.update_target()
        step += 1
        last = {**out.as_log(), "grad_norm": float(grad_norm), "lr": lr, "skipped": skipped}
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
            _append_log(log_path, step, time.time() - t0, last)
            if curves is not None:
                curves.log(curve_values(last, (time.time() - curve_clock[0]) / (step - curve_clock[1])), step=step)
                curve_clock = (time.time(), step)
        if task is not None:
            progress.update(task, completed=step, info=f"cd={last['loss_cd']:.4f} R_img={last['reward_img']:.3f} R_vid={last['reward_vid']:.3f}")
        if on_step is not None:
            on_step(step, last)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            skipped_state = {"count": skipped, "files": {**skipped_before["files"], **_skipped_files(accelerator, data)}}
            save_checkpoint(run_dir, step, student, optimizer, distiller, accelerator, cfg.keep_checkpoints, time.time() - t0,
                            extra={"skipped_videos": skipped_state})

    skipped_files = {**skipped_before["files"], **_skipped_files(accelerator, data)}
    gathered = accelerator.get_state_dict(student) if sharded_engine(accelerator) else None  # every process
    if accelerator.is_main_process:
        # export_weights=ema: the run's student is theta^- (swapped in for the write only).
        exported = distiller.ema.swapped_in() if (cfg.export_weights == "ema" and distiller.ema is not None) else contextlib.nullcontext()
        with exported:
            save_student(accelerator.unwrap_model(student), student_adapter_path(run_dir), state=gathered,
                         metadata={"step": str(step), "variant": cfg.variant, "rm_vid": cfg.rm_vid, "weights": cfg.export_weights})
        # NaN in `last` means "not measured" (a variant without that reward): null in JSON.
        # Every skip event is counted (a file drawn at two steps counts twice); `files` names each once.
        skipped_videos = {"count": int(last.get("skipped", skipped_before["count"])), "files": skipped_files}
        extra = {} if steps_cache is None else {"shared_steps_read": steps_cache.hits}  # steps another job had computed
        _set_status(run_dir, "finished", {"steps": step, "train_seconds": round(time.time() - t0, 1), "final": json_safe(last),
                                          "skipped_videos": skipped_videos, **extra})
        if curves is not None:
            curves.finish()
    accelerator.wait_for_everyone()
    return {"run_dir": str(run_dir), "steps": step, "seconds": round(time.time() - t0, 1), "final": last,
            "main_process": accelerator.is_main_process}


def truncate_log(path: Path, step: int) -> None:
    """Keep the header and the rows of steps <= `step` (the checkpoint resumed from); atomic.

    A torn last row (a kill mid-write: no newline) is dropped too; the step it belongs to is
    after the checkpoint, since a step's row is written before its checkpoint.
    """
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        path.unlink()
        return
    kept = [lines[0] if lines[0].endswith("\n") else lines[0] + "\n"]
    for line in lines[1:]:
        first = line.split(",", 1)[0]
        if line.endswith("\n") and first.isdigit() and int(first) <= step:
            kept.append(line)
    if kept == lines:
        return
    atomic_write_text(path, "".join(kept))


def _skipped_files(accelerator, data) -> dict[str, str]:
    """{path: reason} of every video skipped so far by any process (a collective call)."""
    mine = dict(getattr(data, "skipped", None) or {})
    if accelerator.num_processes == 1:
        return mine
    from accelerate.utils import gather_object

    merged: dict[str, str] = {}
    for part in gather_object([mine]):
        merged.update(part)
    return merged


def _append_log(path: Path, step: int, seconds: float, values: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(LOG_COLUMNS)
        w.writerow([step, f"{seconds:.2f}"] + [f"{values.get(k, float('nan')):.6g}" for k in LOG_COLUMNS[2:]])


def _set_status(run_dir: Path, status: str, extra: dict) -> None:
    record = read_run(run_dir)
    record.update({"status": status, **extra})
    write_json_atomic(run_dir / "run.json", record)


# --- training curves ----------------------------------------------------------------------

TRACKERS = ("tensorboard", "wandb", "none")
TENSORBOARD_DIR = "tensorboard"  # under the run directory (bench ablate: under its work_dir)


def check_tracker(tracker: str) -> None:
    """Fail before training starts when the tracker asked for cannot run."""
    import importlib.util

    if tracker not in TRACKERS:
        raise TrainingError(f"unknown tracker {tracker!r}; choose one of {', '.join(TRACKERS)}", code=2)
    needs = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(tracker)
    if needs and importlib.util.find_spec(needs) is None:
        raise TrainingError(f"--tracker {tracker}: the `{needs}` package is not installed (pip install {needs}), "
                            "or pass --tracker none (train_log.csv is written either way)", code=2)


def open_tracker(tracker: str, run_dir: Path, run_name: str, log_dir: Path | None, first_step: int, config: dict):
    """An accelerate tracker for the training curves (main process only), or None.

    TensorBoard writes offline into `log_dir/run_name` (default: RUN/tensorboard/RUN_NAME); a
    (re)started run purges the events logged after its checkpoint's step (all of them when it
    starts from step 0), so no step is plotted twice. W&B runs in the project
    `t2v-turbo-bench` with the run's config.
    """
    if tracker == "none":
        return None
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    if tracker == "tensorboard":
        t = TensorBoardTracker(run_name, str(log_dir or run_dir / TENSORBOARD_DIR), purge_step=first_step + 1)
    else:
        t = WandBTracker("t2v-turbo-bench", name=run_name, dir=str(run_dir), config=config, resume="allow")
    t.start()
    return t


def curve_values(values: dict, seconds_per_step: float) -> dict[str, float]:
    """What the curves show: every loss term, the rewards the variant uses, grad norm, lr,
    seconds per step (grouped as TensorBoard sections by their prefix)."""
    names = {"loss": "loss/total", "loss_cd": "loss/consistency", "loss_reward": "loss/reward",
             "reward_img": "reward/image", "reward_vid": "reward/video", "grad_norm": "train/grad_norm", "lr": "train/lr"}
    out = {names.get(k, f"train/{k}"): float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    out["train/seconds_per_step"] = float(seconds_per_step)
    return out


# --- CLI ----------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def train_command(
        ctx: typer.Context,
        variant: str = typer.Option(None, "--variant", help="vcm | vcm+img | vcm+vid | vcm+img+vid (T2V-Turbo)."),
        rm_vid: str = typer.Option(None, "--rm-vid", help="Video reward model: viclip | internvid2."),
        config: str = typer.Option("tiny", "--config", "-c", help="Shipped config (tiny, ms, vc2) or a YAML path."),
        run_dir: Path = typer.Option(None, "--run-dir", help="Run directory (default: runs/<teacher>-<variant>-<time>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
        device: str = typer.Option(None, "--device", help="cpu to force the CPU (default: accelerate's choice)."),
        tracker: str = typer.Option("tensorboard", "--tracker", help="Training curves: tensorboard (offline, into RUN/tensorboard; `tensorboard --logdir RUN`), wandb (needs the wandb package) or none. train_log.csv is written either way."),
    ) -> None:
        """Train one ablation variant; extra KEY=VALUE arguments override the config.

        Examples:
          bench train --variant vcm+img+vid --rm-vid viclip steps=300 lr=1e-3
          bench train --config vc2 --variant vcm+img+vid --rm-vid internvid2 data.annotations=webvid.csv
          bench train --run-dir runs/my-run --resume
          bench train --variant vcm --tracker wandb
          accelerate launch --multi_gpu --num_processes 2 -m bench train --device cpu --variant vcm steps=100
        (accelerate's torchrun launcher; on a machine without GPUs the processes use gloo on the CPU)
        """
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        # Errors propagate to bench's one handler (bench/console.py), which picks the exit status.
        console = Console(stderr=True)
        check_device(device)
        if resume and run_dir is None:
            raise TrainingError("--resume needs --run-dir RUN (the run to continue)", code=2)
        if resume and not (run_dir / "run.json").is_file():
            raise TrainingError(f"--resume: {run_dir} has no run.json, so there is no run to resume; "
                                "start it without --resume", code=2)
        if resume and variant is None and rm_vid is None and not ctx.args:
            from bench.config import config_from_dict

            cfg = config_from_dict(read_run(run_dir)["config"])
            cfg.validate()
        else:
            cfg = load_config(config, list(ctx.args), variant=variant, rm_vid=rm_vid)
        check_tracker(tracker)
        target = run_dir or Path("runs") / default_run_name(cfg)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console) as progress:
            summary = train(cfg, target, resume=resume, progress=progress, device=device, tracker=tracker)
        if summary["main_process"]:
            console.print(f"[green]done[/]: {summary['steps']} steps in {summary['seconds']}s -> {summary['run_dir']}")
