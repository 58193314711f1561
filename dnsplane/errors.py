"""One exception root for dnsplane; every error says what the caller should do next.

- ``Retryable``: try again after ``retry_after`` seconds (store busy, timeout).
- ``Permanent``: retrying the same thing will fail the same way.
Each subclass carries its message as a format with named fields (as dnspython does).

Some refusals are values, not errors: a provider answers a write whose fence no longer holds
(a newer generation applied, another owner's marker) with ``model.Conflict``, and the planner's
guards (``min_targets``, ``max_weight_shift``) shape a plan rather than refuse it.
"""

from __future__ import annotations

from typing import Any


class DnsplaneError(Exception):
    """Root of every dnsplane error."""

    fmt = "dnsplane error"

    def __init__(self, message: str | None = None, /, **fields: Any) -> None:
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)
        super().__init__(message if message is not None else self.fmt.format(**fields))


class Retryable(DnsplaneError):
    """Transient: the same call may succeed later."""

    fmt = "temporary failure: {reason}"

    def __init__(self, message: str | None = None, /, *, retry_after: float = 0.5, **fields: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **fields)


class Permanent(DnsplaneError):
    """The same call will fail the same way; a human or a new plan must act."""


class InvalidConfig(Permanent):
    """A fleet file is wrong. ``str()`` is ``path:line: message``."""

    fmt = "{path}:{line}: {message}"

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(path=path, line=line, message=message)


class InvalidPlan(Permanent):
    """A record set or plan that must never be written (I5)."""

    fmt = "invalid plan for {endpoint}: {reason}"

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(endpoint=endpoint, reason=reason)


class PlanCollected(Permanent):
    """A ``Begin`` or a last-known-good named a generation the collector already deleted (a stale or
    redelivered head; a verifier round whose reply came back after the collector ran)."""

    fmt = "generation {generation} was collected; the oldest plan kept is {oldest}"


class GenerationOutOfRange(Permanent):
    """A generation past ``model.MAX_GENERATION`` (a hand-written marker's): no store head follows it."""

    fmt = "generation {generation} is out of range (0..{limit}): {reason}"


class StoreUnavailable(Retryable):
    fmt = "store unavailable: {reason}"


class ProviderUnavailable(Retryable):
    fmt = "provider unavailable: {reason}"


class Frozen(Retryable):
    """An operator froze automated writes (``dnsplane freeze``); the write was not sent."""

    fmt = "frozen by {by}: {reason} (no automated write until `dnsplane unfreeze`)"


class DamagedDataFile(Permanent):
    """A SQLite file of the data directory that cannot be used as it is: damaged (not a database,
    malformed) or of a schema version this dnsplane does not know. Restoring or removing it is a human's call."""

    fmt = "{path}: {reason}"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path=path, reason=reason)


class DataDirBusy(Permanent):
    """Another process holds the data directory's lock (``dnsplane up`` holds it while it runs)."""

    fmt = "{path} is held by pid {pid}: {reason}"

    def __init__(self, path: str, pid: int | None, reason: str) -> None:
        super().__init__(path=path, pid="?" if pid is None else pid, reason=reason)
