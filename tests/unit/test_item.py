"""The ingest item: typed in the code, a flat JSON object on the wire (as pods of every
release write and read it)."""

from __future__ import annotations

import msgspec

from queuefront.envelope import IngestMessage, decode_ingest, encode_ingest, encode_item
from queuefront.item import IngestItem, from_wire
from queuefront.routes import RESERVED_COLUMNS, Sink

SINK = Sink.model_validate(
    {
        "table": "votes",
        "fields": {
            "poll_id": {"type": "text", "source": "path"},
            "choice": {"type": "int"},
            "voter": {"type": "text", "required": False},
        },
    }
)


def test_an_item_travels_flat_and_reads_back_the_same() -> None:
    item = IngestItem(
        id="0b8f4a55-3c2d-4e7a-9f61-5d0c7e3a2b19",
        received_at=1.5,
        fields={"poll_id": "p1", "choice": 2, "voter": None},
    )
    wire = msgspec.json.decode(encode_item(item))
    assert wire == {
        "id": item.id,
        "received_at": 1.5,
        "poll_id": "p1",
        "choice": 2,
        "voter": None,
    }
    message = decode_ingest(encode_ingest(IngestMessage(route="vote", items=[wire])))
    assert from_wire(message.items[0], SINK.fields) == item


def test_only_the_sink_s_fields_are_read_and_a_missing_one_is_none() -> None:
    raw = {"id": "x", "received_at": 2, "choice": 1, "stray": "ignored"}
    item = from_wire(raw, SINK.fields)
    assert item.fields == {"poll_id": None, "choice": 1, "voter": None}


def test_no_sink_field_may_take_an_item_s_own_keys() -> None:
    assert set(RESERVED_COLUMNS) == set(IngestItem(id="", received_at=0, fields={}).wire())
