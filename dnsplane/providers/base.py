"""The provider interface: where DNS records live, and the fence every write carries.

Guarantees every provider keeps (tests/providers/test_conformance.py checks them). Every provider
decides each write with one function, ``Write.verdict(marker, records)`` (model.py: ``APPLIED``,
``WRITE`` or ``CONFLICT``), in batch order, on what the endpoint holds or the batch's earlier writes
left; what follows is what those verdicts mean:
- ``apply`` validates every record set first (I5) and raises ``InvalidPlan``
  before writing anything when one is invalid or empty;
- each ``Write`` is conditional on the endpoint as the writer read it: ``expect``,
  the exact marker, ``prev`` included (``None``: no marker may exist), and ``expect_records``, the
  exact records (``None``: none, as for a first write); see ``Write.holds_on``. A write
  whose precondition fails changes nothing for that endpoint and comes back as
  ``Conflict(current)``;
- an endpoint's records and marker change together, atomically: no reader sees
  the records of one generation with the marker of another;
- a write whose records and marker already equal the current ones is not sent
  (I6: idempotent, costs no provider write); markers are compared by generation and
  digest here (``Marker.same_content``), not by the marker each replaced: a writer of
  the same generation that read another predecessor finds its write done; a current marker
  whose seal is broken (edited by hand) is never the same as a sealed one (a real write).
  ``writes`` counts endpoint writes sent;
- ``Rejected(key, reason)``: the provider refuses THIS endpoint's write for a reason that retrying
  the same write will not fix (it does not fit one message or change batch, the server would
  ignore part of it: a CNAME at the name, a DNAME above it, a delegation covering it; a
  prerequisite that keeps failing although the endpoint reads unchanged). Nothing of that
  endpoint was written: its records and marker are as they were (a marker never says written
  when the records are not). It is per endpoint: a batch that fails because of one endpoint is
  narrowed (bisection, or one message per endpoint) to the endpoints at fault, and every other
  write of the ``apply`` comes back ``Applied`` or ``Conflict`` as if they had been alone. Only a
  write that would change something can be rejected (one already applied is ``Applied(written=
  False)``, a stale one ``Conflict``). ``apply`` never raises for one endpoint's fault
  (``Permanent`` and ``ProviderUnavailable`` are for the provider as a whole). The actors
  quarantine a rejected endpoint (journal, log, ``dnsplane status``) and retry it only with a
  later plan or after a backoff;
- the write token (``write_token``), for a provider that keeps one: a value for the whole zone that
  every ``apply`` that writes anything changes, to a value never used before, in the same atomic change
  as its writes (hand edits need not change it). A write that carries a token (``Write.token``) and
  would be written (verdict ``WRITE``) is written only if the zone's token is still that value, or
  only this ``apply``'s own earlier changes moved it from that value; otherwise it comes back
  ``Conflict(current)`` with nothing of it written. It is what closes the store fence's window
  (docs/design.md, "The fence's window"): a plan published after the writer's fence read is written
  after its token read, and that write moves the token, whatever a person does to the endpoint
  afterwards. ``TOKEN_ABSENT`` is the token of a zone no dnsplane has written since it kept one.

What a provider does NOT promise: that several endpoints in one ``apply`` are
written atomically together (``Capabilities.atomic_batches`` says whether they are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from dnsplane.model import (  # noqa: F401 - Write and results are re-exported here for providers
    Applied,
    Conflict,
    EndpointKey,
    Observed,
    Rejected,
    Write,
    WriteResult,
    validate_record_set,
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, declared as data."""

    atomic_batches: bool  # all writes of one apply() commit together
    native_cas: bool  # the provider itself checks the precondition
    weighted_answers: bool  # answers one target per response, by weight
    max_batch: int  # endpoints per apply() call
    # reads cost by position in the zone's DNS order: the actors batch neighbours (``model.zone_order``)
    ordered_reads: bool = False


TOKEN_ABSENT = ""  # the write token of a zone that has none yet (``Provider.write_token``)


class Provider(ABC):
    """Base class: one mandatory hook, ``_apply``, plus reads."""

    capabilities: ClassVar[Capabilities]
    kind: ClassVar[str]

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.writes = 0  # endpoint writes actually sent to the backend

    def apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        """Validate all, then write each endpoint conditionally. Results are in input order."""
        for w in writes:
            validate_record_set(w.key, w.records, self.zone)
        if not writes:
            return []
        return self._apply(writes)

    @abstractmethod
    def _apply(self, writes: Sequence[Write]) -> list[WriteResult]:
        """Write already-validated changes, each conditional on its ``expect``."""

    def write_token(self) -> str | None:
        """The zone's write token now (``TOKEN_ABSENT`` if it has none yet), or ``None`` for a provider that
        keeps none: its writes then carry no token and the fence's window stays open there."""
        return None

    @abstractmethod
    def read(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        """Current records and marker of each key (``Observed(None, None)`` if absent)."""

    def read_for_write(self, keys: Iterable[EndpointKey]) -> dict[EndpointKey, Observed]:
        """What an enactor decides its writes on: ``read`` here. A provider may serve it from what it already
        knows when that can only make a write refused by its own compare-and-swap or skipped, never unsafe
        (Route 53: reads.py); the verifier's ``read`` is always what the provider holds now."""
        return self.read(keys)

    def stats(self) -> dict[str, object]:
        """Counters for ``dnsplane status`` (API calls by kind, rounds): none here."""
        return {}

    @abstractmethod
    def read_all(self) -> dict[EndpointKey, Observed]:
        """Every endpoint that has records or a marker."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
