from rich.console import Console

from bench.console import print_error


def test_error_messages_print_brackets_as_text():
    console = Console(record=True, width=200)
    print_error(console, "missing /data/[bold]clips/a.mp4; CI [1.64, 7.19]")
    assert console.export_text().strip() == "error: missing /data/[bold]clips/a.mp4; CI [1.64, 7.19]"
