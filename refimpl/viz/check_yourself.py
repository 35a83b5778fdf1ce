"""Check-yourself questions: the learner predicts in one cell, a later cell reveals the answer.

A lesson asks its question in markdown, gives a cell `prediction = None` for the learner to
fill, and only then, in the next cell, computes the answer on the machine and calls `reveal`.
`verdict` is the plain-text model of what `reveal` draws (tests drive it); numbers are written
in the radix the question uses, hex for addresses and frames.
"""

from __future__ import annotations

import html

from IPython.display import HTML

RADIXES = ("hex", "dec", "bin")


def show(value: object, radix: str = "hex") -> str:
    """`value` as the question writes it: ints (also inside tuples and lists) in `radix`."""
    if radix not in RADIXES:
        raise ValueError(f"radix is one of {', '.join(RADIXES)}, not {radix!r}")
    if isinstance(value, bool) or not isinstance(value, (int, tuple, list)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(show(item, radix) for item in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return {"hex": f"{value:#x}", "dec": f"{value:d}", "bin": f"{value:#b}"}[radix]


def verdict(prediction: object, answer: object, radix: str = "hex") -> str:
    """One line: no prediction yet, right, or what was predicted against the answer."""
    if prediction is None:
        return f"no prediction yet (set `prediction` above first); the answer is {show(answer, radix)}"
    if prediction == answer:
        return f"right: {show(answer, radix)}"
    return f"not quite: you predicted {show(prediction, radix)}, the answer is {show(answer, radix)}"


def reveal(prediction: object, answer: object, why: str, radix: str = "hex") -> HTML:
    """The verdict, then why, as a small box under the cell."""
    line = verdict(prediction, answer, radix)
    colour = "#1a7f37" if line.startswith("right") else "#9a6700"
    return HTML(f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
                f'<b style="color:{colour}">{html.escape(line)}</b><br>{html.escape(why)}</div>')
