"""Which of an actor's fields make up its state, as a model checker tells states apart: field metadata.

An actor is a dataclass. A field counts toward the actor's state unless its declaration says why
not, in ``metadata["identity"]``::

    name: str = field(metadata=CONFIG)
    stats: dict[str, int] = field(default_factory=dict, metadata=NOTE)
    sent: dict[EndpointKey, Write] = field(default_factory=dict, metadata=ROUND)

- ``CONFIG``: fixed when the actor is built, the same in every state of a run (its name, zone, fleet,
  batch size). Not part of a state; copies of the actor share the value (it is never changed).
- ``NOTE``: written, never read by a decision (statistics, diagnostics shown by ``status``). Not part of
  a state: two actors that differ only there act alike from then on.
- ``ROUND``: what the previous round left. While the actor is idle, or waits on the request that starts
  its next round, every path overwrites the field before reading it, so it is not part of the state
  then (it is at other times). The explorer names each actor's round-starting request
  (``dnsplane.sim.identity.ROUND_STARTS``) and resets these fields to their defaults there.

Nothing here changes what an actor does: the metadata is read only by the explorer
(``dnsplane.sim.identity``). A field wrongly marked would merge states that differ, so a mark is a
claim about the actor's code ("no decision reads it") that the explorer's tests check against the
unreduced search on small configurations.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

IDENTITY = "identity"  # the metadata key
CONFIG: Mapping[str, str] = MappingProxyType({IDENTITY: "config"})
NOTE: Mapping[str, str] = MappingProxyType({IDENTITY: "note"})
ROUND: Mapping[str, str] = MappingProxyType({IDENTITY: "round"})
