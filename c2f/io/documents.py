"""Parsing the JSON and TOML that users' files carry (label files, manifests, weights metadata)."""

from __future__ import annotations

import json
import tomllib

from c2f.errors import C2FError


def parse_json(text: str, source: str, hint: str = "") -> object:
    """json.loads, with every failure (syntax, numbers of thousands of digits, deep nesting) a C2FError."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError, OverflowError) as error:  # ValueError includes JSONDecodeError
        raise C2FError(f"{source}: not valid JSON ({first_line(error)}){hint}.") from None


def parse_toml(text: str, source: str, hint: str = "") -> dict:
    """tomllib.loads, with every failure (syntax, numbers of thousands of digits, deep nesting) a C2FError."""
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError, OverflowError) as error:  # ValueError includes TOMLDecodeError
        raise C2FError(f"{source}: not valid TOML ({first_line(error)}){hint}.") from None


def first_line(error: BaseException) -> str:
    """An exception's message on one line (Python's digit-limit message runs over two)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:200] + "..."
