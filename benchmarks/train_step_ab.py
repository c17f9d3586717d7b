"""One training step of this checkout's distiller against another commit's, side by side.

Loads `t2v_turbo_core/distillation.py` of a baseline source tree (e.g. `git worktree add
/tmp/base <commit>`) next to this one's, builds both distillers for the same tiny-world
student recipe, and times whole `bench train` steps (batch, text encoding, step, backward,
optimizer, target update) interleaved, old, new, old, new, so that the machine's load weighs
on both alike. The two students start equal and see the same batches and seeds, so their
losses must agree exactly; the script checks that and reports the speed ratio.

    .venv/bin/python benchmarks/train_step_ab.py --old-src /tmp/base [--batch 8] [--repeats 4]
        [--out benchmarks/results/train_step_ab.json] [--shared-steps]

--shared-steps: this checkout's side reads each step's batch, text and teacher pass from the
records another variant (`--producer`) wrote first, as `bench ablate`'s later trainings do
(`bench.step_cache`, on disk); the baseline side renders, encodes and runs the teacher itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from t2v_turbo_core.safe_io import atomic_write_json


def _load_old_distillation(src: Path):
    path = src / "t2v_turbo_core" / "distillation.py"
    if not path.is_file():
        raise SystemExit(f"--old-src: no {path}")
    spec = importlib.util.spec_from_file_location("baseline_distillation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old-src", required=True, type=Path, help="source tree of the baseline commit")
    p.add_argument("--old-label", default="", help="what the baseline is (e.g. its commit), recorded in the results")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="vcm,vcm+img+vid")
    p.add_argument("--out", default="benchmarks/results/train_step_ab.json")
    p.add_argument("--shared-steps", action="store_true", help="this checkout's side reads the steps a producer variant shared")
    p.add_argument("--producer", default="vcm+img+vid")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from bench.config import load_config
    from bench.train import TinyWorldBatches
    from bench.tinyworld.zoo import load_tiny_rewards, load_tiny_teacher
    import t2v_turbo_core.distillation as new_distillation
    from t2v_turbo_core.lora import trainable_parameters

    old_distillation = _load_old_distillation(args.old_src)
    teacher, rms = load_tiny_teacher(), load_tiny_rewards()
    load_before = os.getloadavg()
    rows = []

    def make(module, variant):  # "vcm+img+vid:internvid2": the video reward model after a colon (default viclip)
        variant, _, rm = variant.partition(":")
        cfg = dataclasses.replace(load_config("tiny"), variant=variant, rm_vid=rm or "viclip")
        torch.manual_seed(0)
        student = teacher.make_student(cfg.lora_settings())
        distiller = module.ConsistencyDistiller(
            student, teacher.schedule, teacher.text_encoder([""]), cfg.distillation_config(), vae=teacher.vae,
            image_reward=rms["image"] if cfg.uses_image_reward else None,
            video_reward=rms[cfg.rm_vid] if cfg.uses_video_reward else None, unet_kwargs=teacher.unet_kwargs)
        params = list(trainable_parameters(student).values())
        return cfg, distiller, params, torch.optim.AdamW(params, lr=cfg.lr)

    shared = None
    if args.shared_steps:
        import tempfile

        from bench.step_cache import SharedSteps

        shared = SharedSteps(tempfile.mkdtemp(prefix="train-step-ab-"), "bench")
        cfg, distiller, params, optimizer = make(new_distillation, args.producer)
        data = TinyWorldBatches(teacher, cfg.seed, 0)
        for step in range(args.repeats + 1):  # the producer: computes every step and writes it
            torch.manual_seed(1000 + step)
            latents, prompts = data(step, args.batch, "cpu")
            text = teacher.text_encoder(prompts)
            out = distiller.step(latents, text, prompts, generator=torch.Generator().manual_seed(step))
            shared.store(step, latents, prompts, text, out.teacher_record)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            distiller.update_target()
    for variant in args.variants.split(","):
        sides = {}
        for name, module in (("old", old_distillation), ("new", new_distillation)):
            cfg, distiller, params, optimizer = make(module, variant)
            sides[name] = (distiller, params, optimizer, [], [])
        data = TinyWorldBatches(teacher, cfg.seed, 0)
        for step in range(args.repeats + 1):  # step 0: warm-up
            for name in ("old", "new"):
                distiller, params, optimizer, times, losses = sides[name]
                # The student trains in train mode: the UNet's dropout draws from the global RNG.
                torch.manual_seed(1000 + step)
                t0 = time.perf_counter()
                if name == "new" and shared is not None:
                    latents, prompts, text, record = shared.load(step, "cpu")
                    out = distiller.step(latents, text, prompts, generator=torch.Generator().manual_seed(step), teacher_record=record)
                else:
                    latents, prompts = data(step, args.batch, "cpu")
                    out = distiller.step(latents, teacher.text_encoder(prompts), prompts, generator=torch.Generator().manual_seed(step))
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                distiller.update_target()
                if step:
                    times.append(time.perf_counter() - t0)
                losses.append(float(out.loss.detach()))
        old, new = sides["old"], sides["new"]
        row = {"variant": variant, "batch": args.batch, "old_seconds_per_step": statistics.median(old[3]),
               "new_seconds_per_step": statistics.median(new[3]), "old_all": old[3], "new_all": new[3],
               "losses_identical": old[4] == new[4], "losses": new[4]}
        row["speedup"] = row["old_seconds_per_step"] / row["new_seconds_per_step"]
        rows.append(row)
        print(f"{variant:<14} batch {args.batch}: old {row['old_seconds_per_step']:.3f} s, new {row['new_seconds_per_step']:.3f} s, "
              f"{row['speedup']:.3f}x, losses identical: {row['losses_identical']}", flush=True)
    if shared is not None:
        import shutil

        shutil.rmtree(shared.dir.parent, ignore_errors=True)
    result = {"old_src": str(args.old_src), "old_label": args.old_label, "threads": args.threads, "torch": torch.__version__,
              "new_reads_shared_steps": bool(args.shared_steps), "producer": args.producer if args.shared_steps else None, "rows": rows,
              "load": {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()}}
    out = Path(args.out)
    atomic_write_json(out, result, indent=2, allow_nan=True)
    return 0 if all(r["losses_identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
