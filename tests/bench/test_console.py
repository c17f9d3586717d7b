from pathlib import Path

from rich.console import Console

from bench.console import print_error


def test_error_messages_print_brackets_as_text():
    console = Console(record=True, width=200)
    print_error(console, "missing /data/[bold]clips/a.mp4; CI [1.64, 7.19]")
    assert console.export_text().strip() == "error: missing /data/[bold]clips/a.mp4; CI [1.64, 7.19]"


def test_every_bench_error_class_derives_from_the_one_base():
    """One error base: every exception class bench defines carries its exit code as a BenchError
    (the VBench driver's, which runs where bench cannot be imported, excepted)."""
    import importlib
    import pkgutil

    import bench
    from bench.errors import BenchError

    classes = []
    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        if info.name == "bench.vbench.driver":
            continue
        module = importlib.import_module(info.name)
        classes += [obj for obj in vars(module).values()
                    if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == info.name]
    assert len(classes) >= 15
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes
              if not issubclass(c, BenchError) and c.__qualname__ != "VoteConflict"]
    assert strays == []


def test_a_bench_error_keeps_its_code_and_fields_across_pickling():
    import pickle

    from bench.console import exit_code
    from bench.report import ReportInputError

    err = pickle.loads(pickle.dumps(ReportInputError(Path("/x/y.json"), "not JSON")))
    assert isinstance(err, ReportInputError) and err.path == Path("/x/y.json") and str(err) == "/x/y.json: not JSON"
    assert exit_code(err) == 2 and err.note == "nothing was written."


def test_a_mistyped_option_is_a_usage_error_not_a_bug():
    """typer 0.22+ parses with its own copy of click, whose UsageError is not click's: the root
    handler once reported `bench train --stpes 5` as "an unexpected error" with exit 1."""
    import subprocess
    import sys

    for verb in (["train"], ["generate"], ["ablate"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *verb, "--no-such-option"], capture_output=True, text=True)
        assert proc.returncode == 2, (verb, proc.returncode, proc.stderr[-500:])
        assert "No such option" in proc.stderr and "unexpected error" not in proc.stderr, proc.stderr[-500:]
