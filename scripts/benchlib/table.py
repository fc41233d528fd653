"""Markdown tables, the format every benchmark prints its results in (and the README quotes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One row of a benchmark's result table: the scenario, hubfs's figure, the peer's, their ratio, the goal
    and whether it was met (None: no goal); ``value`` and ``extra`` go to the JSON output."""

    scenario: str
    hubfs: str
    peer: str
    ratio: str
    goal: str
    met: bool | None
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """The lines of a Markdown table; the columns whose indexes are in ``right`` are right-aligned."""
    right = set(right)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def print_table(head: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> None:
    for line in markdown_table(head, rows, right):
        print(line)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``1.23x``, or ``n/a`` when either is missing."""
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def size_label(size: int) -> str:
    """``1 GiB`` for whole GiB, else ``256 MiB`` (rounded)."""
    gib = 1 << 30
    return f"{size // gib} GiB" if size >= gib and size % gib == 0 else f"{size / (1 << 20):,.0f} MiB"
