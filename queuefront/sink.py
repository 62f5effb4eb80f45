"""Sink schemas: validating an ingest body at the api, storing items at the writer.

Validation happens at the api, before the 202, so a bad item is refused to its sender
with the field and the problem named — instead of travelling to the writer and ending
in a dead-letter queue. The writer trusts nothing it cannot store, though: a row the
database still rejects is isolated there (see ``workers.writer``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from queuefront.item import ID, RECEIVED_AT, RESERVED_KEYS, IngestItem, from_wire
from queuefront.routes import FieldType, Sink, SinkField

INT_RANGE = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
PG_ARRAY_TYPE: dict[FieldType, str] = {
    "int": "int4[]",
    "bigint": "int8[]",
    "text": "text[]",
    "bool": "bool[]",
    "uuid": "uuid[]",
    "timestamptz": "timestamptz[]",
    "jsonb": "jsonb[]",
}
MAX_JSON_DEPTH = 32
"""Deepest nesting of a jsonb value (arrays and objects), the value itself counting 1."""
ITEM_NAMESPACE = uuid.UUID("6f1c2f55-7b0e-4d57-9a0f-2f8c1e0c9a41")
"""uuid5 namespace of item ids derived from Idempotency-Key headers."""


class Invalid(ValueError):
    """An ingest body that does not fit its sink; the message names field and problem."""


def item_id(route: str, idempotency_key: str | None, *, client: str) -> str:
    """A client's retry with the same Idempotency-Key becomes the same row (same id).

    The key is the client's own: another client using the same key is another row.
    """
    if idempotency_key:
        return str(uuid.uuid5(ITEM_NAMESPACE, f"{route}\x00{client}\x00{idempotency_key}"))
    return next(_fresh_ids)


def _uuids() -> Iterator[str]:
    """Fresh item ids in UUID form: a random 64-bit half per process and a counter, so
    unique across pods and restarts like uuid4 (a collision needs two processes to draw
    the same 64 random bits), without a system call and a UUID object per vote."""
    head = os.urandom(8).hex()
    prefix = f"{head[:8]}-{head[8:12]}-{head[12:16]}-"
    for n in itertools.count():
        tail = f"{n:016x}"
        yield f"{prefix}{tail[:4]}-{tail[4:]}"


_fresh_ids = _uuids()


def _check_value(name: str, spec: SinkField, value: Any) -> Any:
    """The value as it travels in the message (JSON-safe), or Invalid."""
    kind, max_length = spec.type, spec.max_length
    if kind in INT_RANGE:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{name}: expected an integer, got {type(value).__name__}")
        low, high = INT_RANGE[kind]
        if not low <= value <= high:
            raise Invalid(f"{name}: {value} is out of range for {kind}")
        if spec.min is not None and value < spec.min:
            raise Invalid(f"{name}: {value} is out of range (at least {spec.min})")
        if spec.max is not None and value > spec.max:
            raise Invalid(f"{name}: {value} is out of range (at most {spec.max})")
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise Invalid(f"{name}: expected a string, got {type(value).__name__}")
        if max_length is not None and len(value) > max_length:
            raise Invalid(f"{name}: longer than {max_length} characters")
        if "\x00" in value:
            raise Invalid(f"{name}: NUL characters (\\u0000) are not allowed")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise Invalid(f"{name}: expected true or false, got {type(value).__name__}")
        return value
    if kind == "uuid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise Invalid(f"{name}: not a UUID") from None
    if kind == "timestamptz":
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise Invalid(f"{name}: not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise Invalid(f"{name}: timestamp needs a UTC offset")
        return parsed.isoformat()
    _check_json(name, value)  # jsonb: any JSON value Postgres can store
    return value


def _check_json(name: str, value: Any) -> None:
    """A jsonb value Postgres will take: no NUL in any string or key (jsonb refuses
    ``\u0000``), nesting bounded (deep values cost stack at every hop)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise Invalid(f"{name}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, str):
            if "\x00" in node:
                raise Invalid(f"{name}: NUL characters (\\u0000) are not allowed")
        elif isinstance(node, dict):
            for key, child in node.items():
                if "\x00" in key:
                    raise Invalid(f"{name}: NUL characters (\\u0000) are not allowed in keys")
                todo.append((child, depth + 1))
        elif isinstance(node, list):
            todo.extend((child, depth + 1) for child in node)


_object_decoder = msgspec.json.Decoder(dict[str, Any])
_INTEGER = re.compile(r"-?[0-9]{1,20}")


def path_value(name: str, spec: SinkField, raw: str) -> Any:
    """A path parameter (always text) as its field's type; Invalid when it is not one."""
    if spec.type in INT_RANGE:
        if not _INTEGER.fullmatch(raw):
            raise Invalid(f"{name}: expected an integer, got {raw[:40]!r}")
        return _check_value(name, spec, int(raw))
    if spec.type == "bool":
        if raw not in ("true", "false"):
            raise Invalid(f"{name}: expected true or false")
        return raw == "true"
    return _check_value(name, spec, raw)


def validate(
    sink: Sink,
    raw_body: bytes,
    path_params: Mapping[str, str],
    *,
    route: str,
    item: str,
    received_at: float,
) -> IngestItem:
    """Parses and checks a request body; returns the item that goes on the queue."""
    try:
        body = _object_decoder.decode(raw_body) if raw_body.strip() else {}
    except msgspec.DecodeError as exc:
        raise Invalid(f"body is not a JSON object: {exc}") from None
    except RecursionError:  # the decoder's own stack limit (about 1,000 levels)
        raise Invalid(f"body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    body_fields = {n for n, f in sink.fields.items() if f.source == "body"}
    unknown = sorted(set(body) - body_fields)
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, spec in sink.fields.items():
        if spec.source == "path" and name in path_params:
            out[name] = path_value(name, spec, path_params[name])
            continue
        value = body.get(name)
        if value is None:
            if spec.required:
                raise Invalid(f"{name}: required")
            out[name] = None
            continue
        out[name] = _check_value(name, spec, value)
    return IngestItem(id=item, received_at=received_at, fields=out)


# --- the writer side -------------------------------------------------------------------

LATEST_RECEIVED_AT = 253_402_300_799.0
"""9999-12-31T23:59:59Z: the last second a ``datetime`` (hence the insert) can hold."""


def check_item(sink: Sink, item: Mapping[str, Any]) -> None:
    """An item from a message (its wire form), checked again before it joins a batch
    insert; Invalid names the field. The api validated it, but anyone who may send to
    the queue can write one: a value the insert cannot take (``received_at: 1e300``, an
    int past its column's range) would otherwise fail the whole batch, every time it is
    retried."""
    item_id = item.get(ID)
    if not isinstance(item_id, str):
        raise Invalid(f"{ID}: not a string")
    try:
        uuid.UUID(item_id)
    except ValueError:
        raise Invalid(f"{ID}: not a UUID") from None
    at = item.get(RECEIVED_AT)
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise Invalid(f"{RECEIVED_AT}: not a number")
    if not 0 <= at <= LATEST_RECEIVED_AT:  # NaN fails this too
        raise Invalid(f"{RECEIVED_AT}: {at!r} is no time a timestamp column can hold")
    for name, spec in sink.fields.items():
        value = item.get(name)
        if value is None:
            if spec.required:
                raise Invalid(f"{name}: required")
            continue
        _check_value(name, spec, value)


def item_of(sink: Sink, item: Mapping[str, Any]) -> IngestItem:
    """A checked item from a message (``check_item``), with its sink's fields."""
    return from_wire(item, sink.fields)



def _to_db(kind: FieldType, value: Any) -> Any:
    if value is None:
        return None
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "timestamptz":
        return dt.datetime.fromisoformat(value)
    if kind == "jsonb":
        return msgspec.json.encode(value).decode()
    return value


def quote_ident(name: str) -> str:
    """A Postgres identifier, always quoted: a column may be called ``user`` or ``order``.

    Names come from the validated route table, never from messages; quoting is what
    keeps a reserved word from turning every insert into a syntax error.
    """
    return '"' + name.replace('"', '""') + '"'


def insert_sql(sink: Sink) -> str:
    """ONE statement for a whole batch: unnest the column arrays, skip known ids."""
    columns = ", ".join(quote_ident(c) for c in (*RESERVED_KEYS, *sink.fields))
    types = ["uuid[]", "timestamptz[]", *(PG_ARRAY_TYPE[f.type] for f in sink.fields.values())]
    params = ", ".join(f"${i}::{t}" for i, t in enumerate(types, start=1))
    return (
        f"INSERT INTO {quote_ident(sink.table)} ({columns}) "
        f"SELECT * FROM unnest({params}) "
        f"ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def first_occurrences(items: Sequence[IngestItem]) -> tuple[list[IngestItem], int]:
    """The items with an id not seen earlier in ``items``, and how many repeats were dropped.

    One batch can hold one id several times (a client's retries with one
    Idempotency-Key, a message delivered twice): the insert stores it once, and only
    that first occurrence may count in the tallies.
    """
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.id in seen:
            continue
        seen.add(item.id)
        unique.append(item)
    return unique, len(items) - len(unique)


def columns(sink: Sink, items: Sequence[IngestItem]) -> list[list[Any]]:
    """Row items → one list per column, in ``insert_sql``'s order."""
    cols: list[list[Any]] = [
        [uuid.UUID(i.id) for i in items],
        [dt.datetime.fromtimestamp(i.received_at, dt.UTC) for i in items],
    ]
    for name, spec in sink.fields.items():
        cols.append([_to_db(spec.type, i.fields.get(name)) for i in items])
    return cols
