"""Live progress bars for `vtp run`: one bar per stage, chunks done / total for the encode."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

STAGE_LABELS = {"probe": "probe + plan", "analyse": "analyse chunks", "encode": "encode chunks",
                "rework": "encode again", "publish": "publish"}


class RichProgress:
    def __init__(self, console: Console, title: str):
        self._title = title
        self._bars = Progress(
            TextColumn("[bold]{task.fields[title]}[/] {task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            # Bars are for people watching a terminal; piped, stderr keeps only the errors.
            disable=not console.is_terminal,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self._bars.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._bars.__exit__(*exc_info)

    def stage(self, name: str, total: int) -> None:
        self._tasks[name] = self._bars.add_task(STAGE_LABELS.get(name, name), total=total, title=self._title)

    def advance(self, name: str, amount: int = 1) -> None:
        if name in self._tasks:
            self._bars.advance(self._tasks[name], amount)
