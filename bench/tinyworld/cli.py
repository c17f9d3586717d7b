"""`bench zoo`: build the tiny world's model zoo (the embedded default) from scratch."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.console import sub_app
from bench.errors import BenchError

zoo_app = sub_app("zoo", "The tiny world's model zoo: rebuild it from scratch, resumably.")


@zoo_app.command("build")
def build(
    stage: list[str] = typer.Option(None, "--stage", "-s", help="Stage(s) to run (default: all, in order). Repeatable."),
    zoo_dir: Path = typer.Option(None, help="Where finished models go (default: the shipped zoo inside the package)."),
    work_dir: Path = typer.Option(Path("runs/zoo-build"), help="Checkpoints and logs of unfinished stages."),
    threads: int = typer.Option(1, help="torch intra-op threads (1 is fastest when other processes share the CPU)."),
    force: bool = typer.Option(False, help="Run stages that are already exported again: they resume from their checkpoint under --work-dir up to their current step count (delete runs/zoo-build/<stage> to start from step 0)."),
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
    if threads < 1:
        raise BenchError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    names = stage or list(B.STAGES)
    unknown = [s for s in names if s not in B.STAGES]
    if unknown:
        raise BenchError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(B.STAGES)}")
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
            B.STAGES[name](ctx)  # a StageError reaches bench's one handler: exit 1
            progress.console.print(f"[green]{name}[/]: done")


@zoo_app.command("check")
def check(
    zoo_dir: Path = typer.Option(None, help="Zoo to check (default: the shipped one)."),
    out: Path = typer.Option(None, help="Where to write gates.json (default: inside the zoo)."),
    sheets: Path = typer.Option(None, help="Folder for the contact sheets (teacher samples, renders); default: docs/img for the shipped zoo, else the folder gates.json goes to."),
    threads: int = typer.Option(2, help="torch intra-op threads."),
) -> None:
    """Re-measure the tiny world's quality gates from the zoo's files and write gates.json.

    VAE reconstruction error on held-out clips; reward models' caption retrieval; the
    evaluators' accuracy on held-out clean renders; 50-step CFG teacher samples on held-out
    prompts judged by the evaluators against chance, with 95% intervals and binomial p-values
    (and a contact sheet to look at; relation is also read from the named shapes' positions
    alone, split into axis and direction, and with the objects found by colour); the shapes
    the teacher draws when asked for each one; and the teacher's own denoising error used as a
    shape classifier and as a relation classifier (what it knows).
    """
    import time

    import torch
    from rich.console import Console

    from t2v_turbo_core.safe_io import atomic_write_json
    from rich.table import Table

    from bench.tinyworld import check as C
    from bench.tinyworld.gates import evaluator_accuracy
    from bench.tinyworld.zoo import SHIPPED_ZOO, load_tiny_evaluators, load_tiny_rewards, load_tiny_teacher, zoo_dir as resolve
    from bench.validate import json_safe

    console = Console()
    if threads < 1:
        raise BenchError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    d = resolve(zoo_dir)
    target = out or d / "gates.json"
    if sheets is None:
        # The repository's figures show the shipped zoo; another zoo's sheets stay with its gates.
        sheets = Path("docs/img") if d == SHIPPED_ZOO.resolve() else target.parent
    # A missing or damaged zoo file (ZooError, WeightsFileError) reaches bench's one handler: exit 2.
    teacher = load_tiny_teacher(d)
    rewards = load_tiny_rewards(d)
    evaluators = load_tiny_evaluators(d)
    sheets.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    gates = {
        "vae": C.vae_gate(teacher),
        "rewards": C.reward_gate(rewards),
        "evaluators": evaluator_accuracy(evaluators),
        "teacher": C.teacher_gate(teacher, evaluators, sheet=sheets / "tiny-teacher-samples.png"),
        "teacher_shapes": C.teacher_shapes(teacher, evaluators),
        "teacher_knows_shapes": C.teacher_knows_shapes(teacher),
        "teacher_knows_relations": C.teacher_knows_relations(teacher),
    }
    C.real_clip_sheet(sheets / "tiny-world-renders.png")
    gates["seconds"] = round(time.time() - t0, 1)
    # NaN in a gate means "not computable" (e.g. no video detected): null in strict JSON.
    atomic_write_json(target, json_safe(gates), indent=2)
    table = Table(title=f"tiny-world quality gates ({target})")
    table.add_column("gate")
    table.add_column("value", justify="right")
    table.add_row("VAE held-out MAE / PSNR", f"{gates['vae']['mae']:.4f} / {gates['vae']['psnr_db']:.1f} dB")
    for name, r in gates["rewards"].items():
        table.add_row(f"reward {name}: top-1 retrieval ({r['candidates']} captions) / beats hard negative",
                      f"{r['top1_retrieval']:.3f} / {r['beats_hard_negative']:.3f}")
    for name, v in gates["evaluators"].items():
        if isinstance(v, (int, float)):
            table.add_row(f"evaluator {name}", f"{v:.3f}")

    def reading(r: dict) -> str:
        lo, hi = r["ci95"]
        return f"{r['accuracy']:.3f} [{lo:.2f}, {hi:.2f}], {r['times_chance']:.1f}x chance, p {r['p_above_chance']:.1g} ({r['videos']} videos)"

    for dim in C.TEACHER_DIMENSIONS:
        r = gates["teacher"][dim]
        table.add_row(f"teacher 50-step CFG: {dim} (chance {r['chance']:.3f})", reading(r))
    table.add_row("teacher 50-step CFG: object_class, forced choice", reading(gates["teacher"]["object_class"]["forced_choice"]))
    rel = gates["teacher"]["spatial_relationship"]
    table.add_row("teacher 50-step CFG: spatial_relationship, VBench's rule (both detected, axis only; chance 0.5)",
                  reading(rel["vbench_rule"]))
    table.add_row("teacher 50-step CFG: spatial_relationship, named shapes' positions, detected or not",
                  reading(rel["positions_only"]))
    table.add_row("  the same split: axis (chance 0.5)", reading(rel["positions_only"]["axis"]))
    table.add_row("  the same split: direction, where the axis is right (chance 0.5)",
                  reading(rel["positions_only"]["direction_given_axis"]))
    table.add_row("teacher 50-step CFG: spatial_relationship, objects found by colour", reading(rel["by_colour"]))
    sh = gates["teacher_shapes"]
    table.add_row("teacher 50-step CFG: shape asked for vs drawn, forced choice", reading(sh["forced_choice"]))
    table.add_row("teacher's denoising error as a shape classifier (knows vs draws)", reading(gates["teacher_knows_shapes"]))
    kr = gates["teacher_knows_relations"]
    table.add_row("teacher's denoising error as a relation classifier", reading(kr))
    table.add_row("  split: axis / direction where the axis is right (chance 0.5 each)",
                  f"{kr['axis']['accuracy']:.3f} / {kr['direction_given_axis']['accuracy']:.3f}")
    table.add_row("  its error: opposite relation / one object left out, vs the true caption",
                  f"{kr['relation_gap']:+.1%} / {kr['drop_one_gap']:+.1%}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")
