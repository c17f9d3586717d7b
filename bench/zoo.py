"""`bench zoo`: build the tiny world's model zoo (the embedded default) from scratch."""

from __future__ import annotations

from pathlib import Path

import typer

zoo_app = typer.Typer(help="The tiny world's model zoo: rebuild it from scratch, resumably.", no_args_is_help=True)


@zoo_app.command("build")
def build(
    stage: list[str] = typer.Option(None, "--stage", "-s", help="Stage(s) to run (default: all, in order). Repeatable."),
    zoo_dir: Path = typer.Option(None, help="Where finished models go (default: the shipped zoo inside the package)."),
    work_dir: Path = typer.Option(Path("runs/zoo-build"), help="Checkpoints and logs of unfinished stages."),
    threads: int = typer.Option(1, help="torch intra-op threads (1 is fastest when other processes share the CPU)."),
    force: bool = typer.Option(False, help="Retrain stages that are already exported."),
) -> None:
    """Train every tiny-world model: tokenizers, VAE, teacher (+ text encoder), reward models, evaluators.

    Example: `bench zoo build` (everything), or two processes side by side:
    `bench zoo build -s teacher_data -s teacher` and `bench zoo build -s rm_image -s eval_probe`.
    Interrupted stages resume from their last checkpoint; finished stages are skipped.
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from bench.tinyworld import build as B

    console = Console(stderr=True)
    torch.set_num_threads(threads)
    names = stage or list(B.STAGES)
    unknown = [s for s in names if s not in B.STAGES]
    if unknown:
        console.print(f"[red]error:[/] unknown stage(s) {', '.join(unknown)}; known: {', '.join(B.STAGES)}")
        raise typer.Exit(2)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
    ) as progress:
        ctx = B.Context(zoo_dir=(zoo_dir or B.DEFAULT_ZOO_DIR).resolve(), work_dir=work_dir.resolve(), progress=progress,
                        log=progress.console.print)
        for name in names:
            if not force and B.stage_done(ctx, name):
                progress.console.print(f"[green]{name}[/]: already built, skipped")
                continue
            try:
                B.STAGES[name](ctx)
            except B.StageError as err:
                progress.console.print(f"[red]error:[/] {err}")
                raise typer.Exit(1)
            progress.console.print(f"[green]{name}[/]: done")


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")
