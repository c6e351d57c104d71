"""`backchannel demo`: the scripted demonstration on the embedded default."""

from __future__ import annotations

from rich.console import Console


def run_demo(console: Console | None = None) -> int:
    """Run the demonstration and return the process exit code."""
    console = console or Console()
    console.print("backchannel demo: the protocol core is being built; nothing to show yet.")
    return 0
