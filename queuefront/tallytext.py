"""The text form of a tallied value, in one place.

A live tally is a Redis hash: its key names the group's value and its fields the counted
values, all as text. Three parties write or read that text and must agree on it: the
writer counts the Python values of items (``str()``: ``True`` is ``"True"``), Postgres
renders the same stored values as ``true``/``false`` (``::text``; ``t``/``f`` in its
text protocol) when a tally is rebuilt, and the api answers with typed JSON values.
Only booleans differ between them; the tallied kinds are bool and int (``SinkField.
distinct_values``), and a text group passes through unchanged.
"""

from __future__ import annotations

from typing import Any

from queuefront.routes import FieldType

_FROM_POSTGRES = {"t": "True", "f": "False", "true": "True", "false": "False"}
_TO_POSTGRES = {"True": "true", "False": "false"}


def encode(value: Any) -> str:
    """A value as the tallies hold it (the writer's ``str()``)."""
    return str(value)


def decode(text: str, kind: FieldType) -> Any:
    """The value a tally's text stands for, typed as its field (the api's answer)."""
    if kind in ("int", "bigint"):
        return int(text)
    if kind == "bool":
        return text == "True"
    return text


def from_postgres(text: str, kind: FieldType) -> str:
    """A value as Postgres renders it (``column::text``) → as the tallies hold it."""
    return _FROM_POSTGRES.get(text, text) if kind == "bool" else text


def to_postgres(text: str, kind: FieldType) -> str:
    """The inverse, to compare a tally's text with ``column::text``."""
    return _TO_POSTGRES.get(text, text) if kind == "bool" else text
