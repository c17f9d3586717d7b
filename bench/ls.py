"""`bench ls`: what there is to choose from: configs, variants, suites, dimensions, reward
models, benchmarks, and the runs in a folder (their kind, config, variant and status).

Every list is read from the table the other verbs check against (bench/config.py,
bench/generate, bench/vbench/constants.py, bench/scoring/registry.py), so it cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

TOPICS = ("configs", "teachers", "variants", "suites", "dimensions", "reward-models", "benchmarks", "runs")


def listing(topic: str, runs_dir: Path) -> list[tuple[str, str]]:
    """(name, description) rows of one topic."""
    from bench.config import CONFIG_DIR, VARIANTS
    from bench.errors import BenchError

    if topic == "configs":
        rows = []
        for path in sorted(CONFIG_DIR.glob("*.yaml")):
            first = next((line.lstrip("# ").strip() for line in path.read_text(encoding="utf-8").splitlines()
                          if line.startswith("#")), "")
            rows.append((path.stem, first))
        return rows
    if topic == "variants":
        what = {"vcm": "consistency distillation only", "vcm+img": "plus the image-text reward",
                "vcm+vid": "plus the video-text reward", "vcm+img+vid": "T2V-Turbo: both rewards"}
        return [(v, what.get(v, "")) for v in VARIANTS]
    if topic == "suites":
        from bench.generate import SUITES

        what = {"vbench": "VBench's VBench_full_info.json (944 prompts)", "tiny": "the tiny world's 61 prompts"}
        return [(s, what.get(s, "")) for s in SUITES]
    if topic == "dimensions":
        from bench.vbench.constants import QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS

        return [(d, "quality") for d in QUALITY_DIMENSIONS] + [(d, "semantic") for d in SEMANTIC_DIMENSIONS]
    if topic == "reward-models":
        from bench.models import IMAGE_REWARDS, VIDEO_REWARDS

        rows = []
        for key, table in (("rm_img", IMAGE_REWARDS), ("--rm-vid", VIDEO_REWARDS)):
            for spec in table.values():
                alias = f"; also spelt {', '.join(spec.aliases)}" if spec.aliases else ""
                world = "tiny world" if spec.tiny else "weights: " + ", ".join(spec.weights)
                rows.append((spec.name, f"{spec.role} ({key}): {spec.description}; {world}{alias}"))
        return rows
    if topic == "teachers":
        from bench.models import TEACHERS

        return [(s.name, s.description) for s in TEACHERS.values()]
    if topic == "benchmarks":
        from bench.scoring.registry import BENCHMARKS

        return [(b.name, b.description) for b in BENCHMARKS.values()]
    if topic == "runs":
        if not runs_dir.is_dir():
            raise BenchError(f"no runs folder {runs_dir} (give one with --dir)")
        rows = []
        for path in sorted(runs_dir.iterdir()):
            record_path = path / "run.json"
            if not record_path.is_file():
                continue
            try:
                rec = json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                rows.append((path.name, "unreadable run.json"))
                continue
            cfg = rec.get("config") or {}
            parts = [str(rec.get("kind", "?")), str(cfg.get("teacher", "")), str(cfg.get("variant", "")) if rec.get("kind") == "train" else "",
                     str(rec.get("status", ""))]
            videos = sorted(p.name for p in (path / "videos").iterdir() if p.is_dir()) if (path / "videos").is_dir() else []
            if videos:
                parts.append("videos: " + ", ".join(videos))
            rows.append((path.name, " ".join(p for p in parts if p)))
        return rows
    raise BenchError(f"unknown topic {topic!r}; choose one of {', '.join(TOPICS)}")


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls_command(
        topic: str = typer.Argument("all", help=f"One of {', '.join(TOPICS)}, or all (every one but runs)."),
        runs_dir: Path = typer.Option(Path("runs"), "--dir", help="The folder whose runs `bench ls runs` lists."),
    ) -> None:
        """List the configs, variants, suites, dimensions, reward models, benchmarks, or the runs in a folder."""
        topics = [t for t in TOPICS if t != "runs"] if topic == "all" else [topic]
        for t in topics:
            rows = listing(t, runs_dir)
            typer.echo(f"{t}:")
            width = max((len(name) for name, _ in rows), default=0)
            for name, what in rows:
                typer.echo(f"  {name.ljust(width)}  {what}".rstrip())
