"""Console output shared by the verbs."""

from __future__ import annotations

from typing import Any


def print_error(console: Any, message: object) -> None:
    """`error: <message>` on a rich console, the message printed as text.

    escape: a "[...]" in a message (a path, an interval) is text, not rich markup;
    soft_wrap: long paths stay on one line, copy-pastable.
    """
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True, highlight=False)
