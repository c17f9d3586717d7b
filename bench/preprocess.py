"""`bench preprocess`: build T2V-Turbo-v2's teacher cache (the teacher runs once per video, here).

Per training video: one grid index n ~ U{0..N-1} and one noise from the video's own generator,
z_{t_{n+k}}, the teacher's cond and uncond eps there, the caption embedding and, for a clip
that moves and whose index is in the guided part of the grid (n >= (1 - tau) N), the motion
score dE/dz_t against the clip's own DDIM-inverted latent (`t2v_turbo_core.teacher_cache`).
(The released preprocessing has two scripts: motion videos drawn from the upper half with a
score, motion-free ones from the lower half with zeros, mixed by the caption file; drawing
over the whole grid is that mix at 50/50, with every video usable at every index.)

The cache is a folder of shards (`shard-00000.safetensors`, ...; a shard is written to a temp
file and renamed, so it is whole or absent) and `cache.json` (the settings that determine
the contents, with the usual run provenance). A rerun skips complete shards, so an interrupted
build resumes; a rerun with other settings is refused. Work is split over processes by
`--shard i/n` (process i builds shards i, i + n, ...), or by the RANK / WORLD_SIZE that
`accelerate launch` (torchrun) sets.

Sources: the tiny world renders training clips (a pure function of seed and video number;
the benchmark's prompts held out, as for the teacher); real teachers read the config's
`data.annotations` caption file, whose optional columns `short_caption` (or `short_text`) and
`use_motion_guide` are used as the released data loader uses them.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from bench.v2 import (
    CACHE_MANIFEST,
    V2Error,
    V2Settings,
    cache_identity,
    num_shards,
    read_manifest,
    shard_complete,
    shard_path,
    write_shard,
)


def parse_shard(text: str | None) -> tuple[int, int]:
    """"i/n" -> (i, n); None -> the RANK / WORLD_SIZE of a launcher, else (0, 1)."""
    if text is None:
        try:
            return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        except ValueError:
            return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise V2Error(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise V2Error(f"--shard {text!r}: need 0 <= i < n")
    return i, n


class TinyWorldVideos:
    """Training clip v of the tiny world: (latent [C, F, h, w], caption, short caption, moves)."""

    def __init__(self, teacher, seed: int, count: int):
        from bench.tinyworld.suite import held_out_prompts

        self.teacher, self.seed, self.count = teacher, seed, count
        self.held_out = held_out_prompts()
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return self.count

    @torch.no_grad()
    def __call__(self, v: int, device) -> tuple[torch.Tensor, str, str, bool] | None:
        from bench.tinyworld.render import render
        from bench.tinyworld.world import caption, short_caption, training_scene

        rng = np.random.default_rng([self.seed, 7003, v])
        spec = training_scene(rng, self.held_out)
        pixels = render([spec]).to(device).permute(0, 2, 1, 3, 4) * 2 - 1
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        latent = self.teacher.vae.encode(pixels, sample=True, generator=gen)[0]
        # Long form for the consistency term, short form (subject and action only) for the
        # rewards under data decoupling (`v2.decouple_rewards`).
        return latent, caption(spec), short_caption(spec), not spec.is_static


class CaptionFileVideos:
    """Video v of the config's caption file, decoded by t2v_turbo_core.data (clip from frame 0)."""

    def __init__(self, teacher, cfg: Any):
        from t2v_turbo_core.data import VideoCaptionDataset

        data = dict(cfg.data)
        if "annotations" not in data:
            raise V2Error("real teachers need `data.annotations=/path/to/captions.csv`")
        try:
            fps = float(data["fps"]) if data.get("fps") is not None else teacher.fps
            self.dataset = VideoCaptionDataset(data["annotations"], video_root=data.get("video_root"), num_frames=teacher.num_frames,
                                               height=teacher.height, width=teacher.width, target_fps=fps, seed=cfg.seed,
                                               random_start=False, on_error="skip")
        except (OSError, ValueError) as err:
            raise V2Error(f"data.annotations: {err}") from None
        if len(self.dataset) == 0:
            raise V2Error(f"{data['annotations']}: no videos listed")
        self.teacher, self.seed = teacher, cfg.seed
        self.extra = _extra_columns(Path(data["annotations"]), len(self.dataset))

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.dataset.skipped)

    @torch.no_grad()
    def __call__(self, v: int, device):
        item = self.dataset[v]
        if item is None:  # missing, corrupt or too short: counted and named by the dataset
            return None
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, 7006, v]).integers(2**31)))
        latent = self.teacher.vae.encode(item["pixels"][None].to(device), sample=True, generator=gen)[0]
        short, moves = self.extra[v]
        return latent, item["caption"], short, moves


def _extra_columns(path: Path, n: int) -> list[tuple[str, bool]]:
    """(short caption, use_motion_guide) per row of a CSV/TSV caption file; ("", True) otherwise
    (the released loader's defaults: no short caption, every video a motion video)."""
    rows: list[tuple[str, bool]] = [("", True)] * n
    if path.suffix.lower() not in (".csv", ".tsv"):
        return rows
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")):
            if i >= n:
                break
            short = (row.get("short_caption") or row.get("short_text") or "").strip()
            flag = str(row.get("use_motion_guide", "true")).strip().lower() not in ("0", "false", "no", "")
            rows[i] = ("" if short.lower() == "nan" else short, flag)
    return rows


def preprocess(cfg: Any, out: str | Path | None = None, shard: tuple[int, int] = (0, 1), progress: Any = None,
               device: str | None = None) -> dict[str, Any]:
    """Build (or finish) the cache; returns a summary. See the module doc."""
    from bench.config import config_to_dict
    from bench.runs import load_teacher, run_record, write_json_atomic
    from t2v_turbo_core.motion_guidance import motion_guidance_active
    from t2v_turbo_core.schedule import ddim_grid
    from t2v_turbo_core.teacher_cache import precompute_teacher_target

    cfg.validate()
    settings = V2Settings.from_config(cfg)
    cache = settings.cache_dir(out)
    rank, world = shard
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cache.exists() and not cache.is_dir():
        raise V2Error(f"{cache} exists and is not a folder")
    previous = read_manifest(cache) if (cache / CACHE_MANIFEST).is_file() else None
    teacher = load_teacher(cfg, device=dev)  # a missing weight file: an error before anything is written
    videos = TinyWorldVideos(teacher, cfg.seed, settings.videos) if cfg.teacher == "tiny" else CaptionFileVideos(teacher, cfg)
    n, per = len(videos), settings.records_per_shard
    identity = cache_identity(cfg, settings, n)
    if previous is not None and previous.get("identity") != identity:
        old = previous.get("identity", {})
        changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        raise V2Error(f"{cache} holds a cache built with other settings ({', '.join(changed)}); use another --out "
                      "or delete it")
    total_shards = num_shards(n, per)
    if previous is None:
        write_json_atomic(cache / CACHE_MANIFEST, run_record(
            "preprocess", config_to_dict(cfg), {"seed": cfg.seed},
            {"identity": identity, "shards": total_shards, "status": "building",
             "draws": "per video: index ~ U{0..N-1}, then the noise, from the video's own generator; motion score where the "
                      "clip moves and index >= (1 - tau) N",
             "motion_layers": "the teacher decoder's temporal self-attention maps (attn1)"}))
    grid = ddim_grid(cfg.skip, teacher.schedule.num_train_timesteps)
    uncond = teacher.text_encoder([""])[0]
    mine = [s for s in range(total_shards) if s % world == rank]
    todo = [s for s in mine if not shard_complete(shard_path(cache, s))]
    task = progress.add_task(f"cache {cache.name} [{rank}/{world}]", total=len(mine), completed=len(mine) - len(todo), info="") \
        if progress is not None else None
    t0, built, motion_records, skipped = time.time(), 0, 0, 0
    for s in todo:
        records, captions, shorts, ids = [], [], [], []
        for v in range(s * per, min((s + 1) * per, n)):
            item = videos(v, dev)
            if item is None:
                skipped += 1
                continue
            latent, caption, short, moves = item
            gen = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, 7005, v]).integers(2**31)))
            index = int(torch.randint(0, len(grid), (1,), generator=gen))
            motion = bool(moves and motion_guidance_active(torch.tensor(index), len(grid), settings.tau))
            text = teacher.text_encoder([caption])[0]
            records.append(precompute_teacher_target(teacher.unet, teacher.schedule, latent, text, uncond, gen, skip=cfg.skip,
                                                     index_range=(index, index + 1), motion=motion,
                                                     unet_kwargs=teacher.unet_kwargs))
            captions.append(caption), shorts.append(short), ids.append(v)
            motion_records += int(motion)
            if task is not None:
                progress.update(task, info=f"video {v + 1}/{n}, {motion_records} with motion scores")
        write_shard(shard_path(cache, s), records, captions, shorts, ids, settings.record_dtype)
        built += 1
        if task is not None:
            progress.update(task, completed=len(mine) - len(todo) + built)
    complete = all(shard_complete(shard_path(cache, s)) for s in range(total_shards))
    if complete:
        record = read_manifest(cache)
        if record.get("status") != "complete":
            from bench.v2 import shard_videos

            kept = [v for s in range(total_shards) for v in shard_videos(shard_path(cache, s))]
            record.update({"status": "complete", "completed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "records": len(kept), "skipped_videos": sorted(set(range(n)) - set(kept))})
            write_json_atomic(cache / CACHE_MANIFEST, record)
    return {"cache": str(cache), "shards_built": built, "shards_mine": len(mine), "shards_total": total_shards,
            "complete": complete, "motion_records": motion_records, "skipped_videos": skipped + len(getattr(videos, "skipped", {})),
            "seconds": round(time.time() - t0, 1)}


def register(app: typer.Typer) -> None:
    @app.command("preprocess", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def preprocess_command(
        ctx: typer.Context,
        config: str = typer.Option("tiny_v2", "--config", "-c", help="A v2 config (tiny_v2, vc2_v2) or a YAML path with a v2 block."),
        out: Path = typer.Option(None, "--out", help="Cache folder (default: the config's v2.cache)."),
        shard: str = typer.Option(None, "--shard", help="i/n: build every n-th shard from i (default: accelerate's RANK/WORLD_SIZE, else all)."),
        device: str = typer.Option(None, "--device", help="cpu to force the CPU (default: cuda when available)."),
    ) -> None:
        """Build T2V-Turbo-v2's teacher cache (resumable); extra KEY=VALUE arguments override the config.

        Examples:
          bench preprocess --config tiny_v2 --out caches/tiny_v2
          bench preprocess --config tiny_v2 --shard 1/4 v2.videos=256
          bench preprocess --config vc2_v2 data.annotations=webvid.csv weights.videocrafter2=model.ckpt weights.clip_h=open_clip_pytorch_model.bin
        """
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from bench.config import load_config
        from bench.validate import check_device

        console = Console(stderr=True)
        check_device(device)
        cfg = load_config(config, list(ctx.args))
        if not cfg.v2:
            raise V2Error(f"config {config!r} has no v2 block: preprocessing is for T2V-Turbo-v2 configs (tiny_v2, vc2_v2)")
        where = parse_shard(shard)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console) as progress:
            summary = preprocess(cfg, out, where, progress=progress, device=device)
        state = "complete" if summary["complete"] else "this process's part done; other shards pending"
        console.print(f"[green]done[/]: {summary['shards_built']} shard(s) built, {summary['shards_mine']} of "
                      f"{summary['shards_total']} are this process's; cache {state} -> {summary['cache']}")
