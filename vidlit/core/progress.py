"""One progress bar for long-running tools (curation, feature extraction)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A ``rich`` progress bar over ``total`` items; yields ``advance(n=1, **fields)``
    (fields as ``rich``'s ``Progress.update``, e.g. ``description``).

    With ``enabled=False`` (or nothing to do) no bar is drawn and ``advance`` does nothing.
    """
    if not enabled or total == 0:
        yield lambda n=1, **fields: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(description, total=total)
        # fields: e.g. description=... to show a rate as the run goes
        yield lambda n=1, **fields: bar.update(task, advance=n, **fields)
