"""Progress bars for long work: rich on a terminal, one line per finished task in logs (CI)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_console = Console(stderr=True)


class _LineProgress:
    """Stand-in for rich.Progress when stderr is not a terminal: a line per tenth of a task (so a
    long training run shows its epochs in a log) and one when it is done."""

    def __init__(self):
        self._tasks: dict[int, dict] = {}

    def add_task(self, description: str, total: int) -> int:
        task = len(self._tasks)
        self._tasks[task] = {"description": description, "total": total, "done": 0}
        return task

    def update(self, task: int, advance: int = 0, description: str | None = None) -> None:
        t = self._tasks[task]
        t["done"] += advance
        if description:
            t["description"] = description
        step = max(1, t["total"] // 10)
        if advance and (t["done"] >= t["total"] or t["done"] // step != (t["done"] - advance) // step):
            print(f"{t['description']} [{min(t['done'], t['total'])}/{t['total']}]", file=sys.stderr, flush=True)


@contextmanager
def progress():
    if _console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_console,
            transient=False,
        )
        with bar:
            yield bar
    else:
        yield _LineProgress()
