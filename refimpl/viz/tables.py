"""Tables with headers, for results a lesson computes (a print of aligned columns has none).

`table_html` is the plain model (tests read it); `table` wraps it for display in a notebook.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from IPython.display import HTML

_CELL = ("padding:2px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd;"
         "overflow-wrap:break-word")  # long names wrap instead of widening the page


def table_html(headers: Sequence[str], rows: Sequence[Sequence[object]],
               code: bool = True) -> str:
    """An HTML table: one header row, then `rows`; cells in monospace when `code`."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells, one per header")
    font = "font-family:monospace;" if code else ""
    head = "".join(f'<th style="{_CELL}">{html.escape(str(title))}</th>' for title in headers)
    body = "".join("<tr>" + "".join(f'<td style="{font}{_CELL}">{html.escape(str(cell))}</td>'
                                    for cell in row) + "</tr>" for row in rows)
    return (f'<table style="border-collapse:collapse;font-size:13px;max-width:100%"><tr>{head}'
            f'</tr>{body}</table>')


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], code: bool = True) -> HTML:
    return HTML(table_html(headers, rows, code))
