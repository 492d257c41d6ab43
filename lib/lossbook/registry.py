"""The book's one registry idiom: a literal ``{name: implementation}`` dict, built in the family module that
imports the implementations, read through ``lookup`` (no decorators, no import side effects).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or a KeyError naming the closest matches and every valid name of this ``kind``."""
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(sorted(table))}.") from None
