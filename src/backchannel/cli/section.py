"""A section of the board that stays readable at any width (review §4 row 11).

A section is a titled list of rows under named columns. It decides how to lay itself out
when it is printed, at the width it is given:

- a table, when every column fits at its natural width;
- a table whose columns wrap at spaces, when each still gets its longest word (so no cell
  is ever cut with "…", which is what Rich does to a column squeezed below that);
- otherwise one block per row, a heading and a value a line, which needs only the longest
  heading and the longest word: 80 columns hold any of the board's sections this way.

Piped output is as wide as its lines (`context.PIPE_WIDTH`), so it keeps the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table

__all__ = ["Section"]

# Rich's table defaults, which the width arithmetic below relies on: one space of padding
# on each side of a cell, and a rule before, between and after the columns.
_PADDING = 1


def _rules(columns: int) -> int:
    return columns + 1


@dataclass(slots=True)
class Section:
    """Rows under headings, laid out at print time (see the module's docstring).

    Attributes:
        title: shown above the section.
        headings: the column headings, which name each value in the stacked layout.
        caption: shown below it, if any.
    """

    title: str
    headings: tuple[str, ...]
    caption: str | None = None
    _rows: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def add_row(self, *cells: str, style: str | None = None) -> None:
        """One row: a cell per heading (an empty one is left out when stacked)."""
        if len(cells) != len(self.headings):
            raise ValueError(f"{len(cells)} cells for {len(self.headings)} headings")
        self._rows.append((cells, style))

    def table(self) -> Table:
        """The section as one table, columns at their natural widths."""
        table = Table(title=self.title, caption=self.caption, padding=(0, _PADDING))
        for heading in self.headings:
            table.add_column(heading)
        for cells, style in self._rows:
            table.add_row(*cells, style=style)
        return table

    def stacked(self) -> Table:
        """The section as one block per row: heading and value, a line each."""
        table = Table(title=self.title, caption=self.caption, show_header=False,
                      padding=(0, _PADDING))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for cells, style in self._rows:
            pairs = [(h, c) for h, c in zip(self.headings, cells, strict=True) if c]
            for i, (heading, cell) in enumerate(pairs):
                table.add_row(heading, cell, style=style, end_section=i == len(pairs) - 1)
        return table

    def _column_widths(self, console: Console, options: ConsoleOptions) -> list[Measurement]:
        """Each column's (longest word, longest line), heading included, as printed."""
        widths = []
        for index, heading in enumerate(self.headings):
            cells = [heading, *(cells[index] for cells, _ in self._rows)]
            measured = [Measurement.get(console, options, console.render_str(c)) for c in cells]
            widths.append(Measurement(max(m.minimum for m in measured),
                                      max(m.maximum for m in measured)))
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        available = options.max_width - _rules(len(self.headings)) \
            - 2 * _PADDING * len(self.headings)
        widths = self._column_widths(console, options)
        shortest = sum(w.minimum for w in widths)
        natural = sum(w.maximum for w in widths)
        table = self.table()
        if natural <= available:
            yield table
        elif shortest <= available:
            # Each column gets its longest word, and the room left goes to the columns in
            # proportion to what they would take more (Rich's own squeeze ignores the
            # longest word, and cuts).
            room, wanted = available - shortest, natural - shortest
            for column, width in zip(table.columns, widths, strict=True):
                column.width = width.minimum + room * (width.maximum - width.minimum) // wanted
            yield table
        else:
            yield self.stacked()
