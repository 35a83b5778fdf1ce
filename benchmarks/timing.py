"""Timing side by side: every measurement of a benchmark runs in the same rounds."""

from __future__ import annotations

import time
from typing import Callable, Sequence


def interleaved(functions: dict[str, tuple[Callable, Sequence]], rounds: int = 15) -> dict:
    """Seconds per call of each `functions[name] = (function, arguments)`: `function(argument)`
    for every argument, best of `rounds`.

    Every round runs every function once, so floors and subjects share the same moments of
    machine noise; the minimum over rounds is the least-disturbed run of each.
    """
    best = {name: float("inf") for name in functions}
    for _ in range(rounds):
        for name, (function, arguments) in functions.items():
            start = time.perf_counter()
            for argument in arguments:
                function(argument)
            best[name] = min(best[name], (time.perf_counter() - start) / len(arguments))
    return best


def report(rows: list[tuple[str, float, float, str]]) -> None:
    """Print (name, seconds, floor seconds, note) rows with their ratio to the floor."""
    print(f"{'measurement':44} {'ns/call':>10} {'ratio':>9}")
    for name, seconds, floor, note in rows:
        print(f"{name:44} {seconds * 1e9:10.0f} {seconds / floor:8.2f}x  {note}")
