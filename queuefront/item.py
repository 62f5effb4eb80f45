"""The ingest item: one row (a vote, say) on its way from the api to its sink table.

On the wire, inside an ``IngestMessage``, an item is a flat JSON object: its id, the time
it was received, and its sink's fields by name. Flat, because the fields are the route
table's, not this code's, and a queue holds messages written by pods of an earlier
release as well. In the code it is ``IngestItem``, so the keys every item has are
spelled here only, and a function that takes an item says so in its type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import msgspec

ID = "id"
RECEIVED_AT = "received_at"
RESERVED_KEYS = (ID, RECEIVED_AT)
"""The keys every item has on the wire (and the columns every sink table has): no sink
field may take their names."""


class IngestItem(msgspec.Struct, frozen=True):
    id: str
    """A UUID: derived from the client's Idempotency-Key (or API Gateway's request id),
    so a retry is the same row, or fresh (``queuefront.sink.item_id``)."""
    received_at: float
    """Unix time, on the reference clock (``queuefront.clock``), when the item arrived:
    the writer measures its lag against it and stores it."""
    fields: dict[str, Any]
    """The sink's fields by name, as JSON-safe values (``None``: not given)."""

    def wire(self) -> dict[str, Any]:
        """The item as it travels in a message."""
        return {ID: self.id, RECEIVED_AT: self.received_at, **self.fields}


def from_wire(raw: Mapping[str, Any], names: Iterable[str]) -> IngestItem:
    """An item read from a message, with the fields ``names`` (its sink's). Takes the
    values as they are: checking them is ``queuefront.sink.check_item``'s job."""
    return IngestItem(
        id=cast(str, raw.get(ID)),
        received_at=cast(float, raw.get(RECEIVED_AT)),
        fields={name: raw.get(name) for name in names},
    )
