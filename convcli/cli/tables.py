"""Tables that read at any width (a pipe, an 80-column terminal): a table is shown whole only when
every cell fits on one line; otherwise its long column moves below it as a list."""

from __future__ import annotations

from typing import Any


def fits(console: Any, table: Any) -> bool:
    """Whether ``table`` fits ``console`` without wrapping or squeezing any cell."""
    from rich.measure import Measurement

    # a table measures itself clamped to the space it is given: measure it unbounded
    return Measurement.get(console, console.options.update(width=10**4), table).maximum <= console.width


def notes_below(console: Any, title: str, rows: list[tuple[str, str]]) -> None:
    """``key  text`` lines under a table, the text wrapping under itself (a list, not a table
    of tall cells)."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, text in rows:
        grid.add_row(key, text)
    console.print(title)
    console.print(grid)
