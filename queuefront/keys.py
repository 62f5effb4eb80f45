"""Every Redis key and channel name, in one place.

A configurable prefix lets several stacks (or test runs) share one Redis without
touching each other's keys; with the default empty prefix the names are exactly
those of the design (``reply:<id>``, ``replies:<pod>``, ``cache:<serial>``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = ""

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}reply:{request_id}"

    def reply_channel(self, pod_id: str) -> str:
        return f"{self.prefix}replies:{pod_id}"

    def cache(self, serial: str) -> str:
        """One hash per serial: every response derived from it is a field, so one DEL
        invalidates them all, whatever the number of routes or query variants."""
        return f"{self.prefix}cache:{serial}"

    def cache_generation(self, serial: str) -> str:
        """Bumped by every invalidation of ``serial`` (see ``queuefront.cache``)."""
        return f"{self.prefix}cachegen:{serial}"

    def cache_lease(self, digest: str) -> str:
        """Who is fetching a missing cached response right now (one backend call)."""
        return f"{self.prefix}cachelease:{digest}"

    def cache_events(self) -> str:
        """Channel of invalidations and fills, heard by every api pod's in-process tier."""
        return f"{self.prefix}cache-events"

    def claim(self, request_id: str) -> str:
        """Set by the worker that calls the backend for a request: one call per request."""
        return f"{self.prefix}claim:{request_id}"

    def backend_leases(self) -> str:
        """Sorted set of the backend calls in flight across all workers: one member per
        call, scored by its lease's expiry (``workers.priority.leases``)."""
        return f"{self.prefix}backend-leases"

    def backend_leases_waiting(self) -> str:
        """Set for a moment by a worker that found the backend limit full: releases are
        announced only while it exists."""
        return f"{self.prefix}backend-leases-waiting"

    def backend_leases_freed(self) -> str:
        """Channel on which a released backend lease is announced to waiting workers."""
        return f"{self.prefix}backend-leases-freed"

    def workers(self) -> str:
        """Hash of every worker's drain report (``queuefront.drain``)."""
        return f"{self.prefix}workers"

    def rate(self, client: str, route: str) -> str:
        return f"{self.prefix}rate:{route}:{client}"

    def tally(self, route: str, group_value: str) -> str:
        """One hash per tallied group (a poll): counted value (choice) → count."""
        return f"{self.prefix}tally:{route}:{group_value}"

    def tally_group(self, key: str) -> tuple[str, str] | None:
        """(route, group value) of a key made by ``tally``; None for any other key."""
        head = f"{self.prefix}tally:"
        if not key.startswith(head):
            return None
        route, sep, group = key[len(head) :].partition(":")
        return (route, group) if sep else None

    def tally_pattern(self, route: str) -> str:
        return f"{self.prefix}tally:{route}:*"

    def tally_applied(self, batch_id: str) -> str:
        return f"{self.prefix}tally-applied:{batch_id}"

    def idempotency(self, route: str, key: str) -> str:
        return f"{self.prefix}idem:{route}:{key}"

    def write_probe(self, pod_id: str) -> str:
        """A pod's small key written every second: refused when Redis is out of memory."""
        return f"{self.prefix}probe:{pod_id}"

    def subscriber_name(self, pod_id: str) -> str:
        """CLIENT SETNAME of a pod's pub/sub connection, so operators can find it."""
        return f"{self.prefix}qf-sub-{pod_id}".replace(" ", "_")
