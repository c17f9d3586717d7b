"""The `bench ablate` verb."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from bench.ablate.spec import load_spec
from bench.ablate.run import run_ablation


def register(app: typer.Typer) -> None:
    @app.command("ablate")
    def ablate_command(
        config: Path = typer.Option(None, "--config", "-c", help="Ablation YAML (default: bench/configs/ablate_tiny.yaml)."),
        work_dir: str = typer.Option(None, "--work-dir", help="Where the runs go (default: the config's work_dir)."),
        report: str = typer.Option(None, "--report", help="Report prefix (default: the config's, reports/tiny-ablation)."),
        jobs: int = typer.Option(None, "--jobs", "-j", help="Models trained/generated/scored in parallel (default: the config's)."),
    ) -> None:
        """Train VCM, VCM+R_img, VCM+R_vid, T2V-Turbo (ViCLIP, InternVid2), generate each at 4 steps plus
        the 50-step CFG teacher, score, and write the ablation report (markdown, CSV, plots).

        Resumes where it stopped. Example: `bench ablate` (the tiny world: what `make demo` runs).
        `bench ablate --config bench/configs/ablate_tiny_v2.yaml`: the T2V-Turbo-v2 ablation (v1 vs v2
        with and without motion guidance, 4 and 16 steps; its teacher cache is built first).
        """
        from rich.console import Console

        # ConfigError (exit 2) and AblationError (its job's status) reach bench's one handler.
        console = Console(stderr=True)
        t0 = time.time()
        from bench.ablate import v2 as ablate_v2

        if config is not None and ablate_v2.spec_file_is_v2(config):
            # A `kind: v2` spec (bench/configs/ablate_tiny_v2.yaml): the T2V-Turbo-v2 ablation.
            paths = ablate_v2.run_v2_ablation(ablate_v2.load_v2_spec(config, {"work_dir": work_dir, "report": report, "jobs": jobs}),
                                              console=console)
        else:
            paths = run_ablation(load_spec(config, {"work_dir": work_dir, "report": report, "jobs": jobs}), console=console)
        console.print(f"[green]ablation done[/] in {time.time() - t0:.0f}s:")
        for p in paths:
            console.print(f"  {p}")
