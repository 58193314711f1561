"""Who owns an endpoint (invariant I7), decided from what the provider holds.

Every installation of dnsplane has an owner id (persisted in its store, or ``owner:`` in the
fleet file), and every marker it writes carries it (``Marker.owner``, ``o=``). Before writing an
endpoint, the enactor and the verifier ask ``Ownership.refusal``:

| what the provider holds                              | owner     | written?                    |
|------------------------------------------------------|-----------|-----------------------------|
| nothing (no records, no marker)                      | unowned   | yes                         |
| a marker with this installation's id                 | ours      | yes                         |
| a marker without ``o=`` (written before owner ids)   | ours      | yes; the verifier rewrites  |
|                                                      |           | it once with our id         |
| a marker with this id marked released (``r=1``)      | ours      | yes, once back in the fleet;|
|                                                      |           | the verifier rewrites it    |
|                                                      |           | once unreleased             |
| a marker with another id                             | foreign   | only if the fleet adopts it |
| records without any marker, every address one of the | ours      | yes; the verifier repairs   |
| endpoint's own targets in the fleet (a lost marker)  |           | the marker ("marker-missing")|
| records without any marker, any other address        | foreign   | only if the fleet adopts it |

Records without a marker whose addresses are all addresses of the endpoint's own targets
(``Endpoint.targets``, as the fleet says now) are what dnsplane itself writes there: its records
whose marker was lost (a person deleted only the TXT, or a CNAME put at the marker's name and
removed again took it away). They are this installation's, and the verifier gives them their
marker back through its "marker missing" repair, so a person's deletion window closes as for any
hand edit. Any other address (the zone's ``ns1`` glue, another party's records) is not a target's:
such records stay foreign.

A foreign endpoint the fleet does not adopt is never written: it is reported (logged once,
journalled as "foreign", shown by ``dnsplane status``). Two installations that write one zone
thus never flip its content: whichever wrote an endpoint first owns it, and the other refuses
and alerts. An adopted endpoint's foreign records are overwritten (journalled as "adopt").

An endpoint outside ``managed`` (removed from the fleet: RELEASED) is neither written nor
verified nor recreated; its records stay where they are, and the verifier marks its marker
released once (``Marker.released``, ``r=1``: same generation, digest and records), so a person or
another installation reading the zone can tell it from a managed one. A released marker of
another owner is that owner's: foreign, as any marker of another owner. ``managed`` None means every endpoint
in the store (a world of one fleet that never changes: the simulator's and most tests').

``Ownership()`` is the world of the simulator and of the protocol tests: owner id "" (its markers
look like pre-owner markers, which are its own), every endpoint managed and adopted. The runtime
always builds one from the fleet (``Ownership.of_fleet``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dnsplane.model import Endpoint, EndpointKey, Observed


@dataclass(frozen=True, slots=True)
class Ownership:
    """This installation's owner id, the endpoints it manages and the ones its fleet adopts."""

    owner: str = ""
    managed: frozenset[EndpointKey] | None = None  # None: every endpoint
    adopted: frozenset[EndpointKey] | None = None  # None: every endpoint
    # The addresses of each managed endpoint's own targets in the fleet: marker-less records made only
    # of these are dnsplane's with a lost marker, not foreign (empty: none are)
    targets: Mapping[EndpointKey, frozenset[str]] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of_fleet(cls, owner: str, endpoints: Iterable[Endpoint]) -> Ownership:
        """The ownership a fleet file declares: its endpoints managed, those with ``adopt: true`` adopted."""
        endpoints = tuple(endpoints)
        shared: dict[frozenset[str], frozenset[str]] = {}  # endpoints behind the same targets share one set
        targets = {e.key: shared.setdefault(s, s) for e in endpoints
                   for s in (frozenset(a for t in e.targets for a in t.addresses),)}
        return cls(owner, frozenset(e.key for e in endpoints), frozenset(e.key for e in endpoints if e.adopt),
                   targets)

    def manages(self, key: EndpointKey) -> bool:
        """Whether ``key`` is in the current fleet (False: released, never written nor recreated)."""
        return self.managed is None or key in self.managed

    def adopts(self, key: EndpointKey) -> bool:
        return self.adopted is None or key in self.adopted

    def foreign(self, observed: Observed, key: EndpointKey | None = None) -> str | None:
        """Why what the provider holds is not this installation's, or None (unowned, or ours). With
        ``key``, marker-less records made only of that endpoint's own target addresses are ours."""
        marker = observed.marker
        if marker is not None:
            if marker.owner and marker.owner != self.owner:
                return f"marker of another owner {marker.owner!r}"
            return None
        if observed.records is not None:
            if key is not None and self.lost_marker(key, observed):
                return None
            return "records without a dnsplane marker"
        return None

    def lost_marker(self, key: EndpointKey, observed: Observed) -> bool:
        """Whether ``observed`` is records without a marker whose addresses are all addresses of the
        endpoint's own targets: what dnsplane writes there, its marker lost (repaired, not foreign)."""
        records = observed.records
        if observed.marker is not None or records is None:
            return False
        found = set(records.addresses())
        return bool(found) and found <= self.targets.get(key, frozenset())

    def refusal(self, key: EndpointKey, observed: Observed) -> str | None:
        """Why this installation must not write ``key`` as it is, or None (I7)."""
        if not self.manages(key):
            return "released: no longer in the fleet"
        why = self.foreign(observed, key)
        if why is None or self.adopts(key):
            return None
        return f"foreign: {why} (not adopted; set adopt: true on the endpoint to take it over)"

    def pre_owner(self, observed: Observed) -> bool:
        """Whether the marker is this installation's but carries no owner id yet (to rewrite once)."""
        return bool(self.owner) and observed.marker is not None and not observed.marker.owner

    def other_owner(self, observed: Observed) -> str | None:
        """The other installation's id in the marker, or None."""
        marker = observed.marker
        return marker.owner if marker is not None and marker.owner and marker.owner != self.owner else None
