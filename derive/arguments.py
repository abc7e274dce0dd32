"""Command-line argument types shared by derive, codegen and codegen.train: errors are one line (exit 2)."""

from __future__ import annotations

import argparse
import re

from derive.errors import DeriveError, brief, decimal, short_words


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise DeriveError(f"{self.prog}: {short_words(message)}")


def whole(low: int, high: int, what: str | None = None):
    """An argparse type: a whole number from low to high in ASCII digits, counted (leading zeros dropped)
    before int(), which refuses more than 4300 of them."""
    what = what or f"a whole number from {low} to {high}"

    def parse(text: str) -> int:
        digits = text.strip().lstrip("0") or "0"
        if not re.fullmatch(r"[0-9]+", text.strip()) or len(digits) > len(str(high)) or not low <= int(digits) <= high:
            raise argparse.ArgumentTypeError(f"{brief(text, 24)} is not {what}")
        return int(digits)

    return parse


def seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0 in ASCII digits (float() reads '٣' as 3, and 'nan')."""
    value = decimal(text)
    if value is None or not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{brief(text, 24)} is not a number of seconds above 0")
    return value
