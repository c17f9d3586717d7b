"""`bench humaneval`: the paper's human evaluation as a kit.

  prepare  pair the videos of two or more models (same prompt and index), blind them, write a study
  invite   print rater links (one unguessable token each)
  serve    the raters' web app on this machine (loopback by default)
  report   win / tie / loss with intervals, Bradley-Terry, agreement, the stacked bar chart

The study folder is described in `bench.humaneval.study`, the app in `bench.humaneval.server`,
the statistics in `bench.humaneval.analysis`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bench.console import sub_app

humaneval_app = sub_app("humaneval", "Human evaluation: blinded A/B pairs, a local rating page, votes in SQLite, win rates.")


@humaneval_app.command("prepare")
def prepare_command(
    a: str = typer.Option(..., "--a", help="Model A: a folder of {prompt}-{index}.mp4 (bench generate's output), or NAME=DIR."),
    b: str = typer.Option(..., "--b", help="Model B, as --a."),
    c: Optional[list[str]] = typer.Option(None, "--c", help="More models (repeatable), as --a."),
    out: Path = typer.Option(..., "--out", help="The study folder to create (must not exist, or be empty)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the left/right draws and the raters' orders (default: random; recorded)."),
    max_videos: Optional[int] = typer.Option(None, "--max-videos", help="Use only the first N (prompt, index) videos the models share."),
) -> None:
    """Pair every two models' videos of the same prompt and index, randomise left/right, hide the models."""
    from bench.humaneval.study import prepare_study

    study = prepare_study([a, b, *(c or [])], out, seed=seed, max_videos=max_videos)
    typer.echo(f"study {study.root}: {len(study.pairs)} pairs of {len(study.config['models'])} models, "
               f"{len(study.questions)} questions each; next: bench humaneval invite {study.root} --n 20")


@humaneval_app.command("invite")
def invite_command(
    study_dir: Path = typer.Argument(..., metavar="STUDY"),
    n: int = typer.Option(1, "--n", help="How many rater links to make."),
    base_url: str = typer.Option("http://127.0.0.1:8765", "--base-url", help="Where raters reach `bench humaneval serve`."),
) -> None:
    """Print one link per new rater; the token in it is the rater's identity."""
    from bench.humaneval.study import invite, load_study

    tokens = invite(load_study(study_dir), n)
    for t in tokens:
        typer.echo(f"{base_url.rstrip('/')}/r/{t}")


@humaneval_app.command("serve")
def serve_command(
    study_dir: Path = typer.Argument(..., metavar="STUDY"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default; 0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port, printed)."),
) -> None:
    """Serve the rating page until Ctrl-C; every answered pair is committed to STUDY/votes.sqlite."""
    from bench.humaneval.server import serve
    from bench.humaneval.study import StudyError, load_study

    load_study(study_dir)
    if not 0 <= port <= 65535:
        raise StudyError(f"--port {port} is not a port number")
    try:
        serve(study_dir, host, port, on_ready=lambda p: typer.echo(f"serving {study_dir} on http://{host}:{p}/ (Ctrl-C stops)", err=True))
    except OSError as err:
        raise StudyError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


@humaneval_app.command("report")
def report_command(
    study_dir: Path = typer.Argument(..., metavar="STUDY"),
    out: Path = typer.Option(..., "--out", metavar="PREFIX", help="Writes PREFIX.md, PREFIX.csv, PREFIX.json, PREFIX.png."),
) -> None:
    """Win / tie / loss per question and model pair with 95% intervals, Bradley-Terry, agreement, a bar chart."""
    import json

    import pandas as pd

    from bench.humaneval import analysis
    from bench.humaneval.study import StudyError, load_study
    from bench.report import _write_atomic
    from bench.validate import json_safe

    study = load_study(study_dir)
    result = analysis.report(study)
    if result["votes"] == 0:
        raise StudyError(f"{study_dir}: no votes yet; nothing to report")
    prefix = Path(out)
    files = {
        prefix.with_name(prefix.name + ".md"): analysis.markdown(study, result).encode(),
        prefix.with_name(prefix.name + ".csv"): pd.DataFrame(analysis.csv_rows(result)).to_csv(index=False).encode(),
        prefix.with_name(prefix.name + ".json"): json.dumps(json_safe(result), indent=2, allow_nan=False).encode(),
        prefix.with_name(prefix.name + ".png"): analysis.bar_chart(result),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(humaneval_app, name="humaneval")
