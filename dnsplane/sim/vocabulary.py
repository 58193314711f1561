"""The simulator's one fault vocabulary: what the driver's schedules and the explorer's moves call a fault.

Owns the NAMES, nothing else: the fault kinds of a scenario's ``faults:`` block and of a schedule
(``FaultKind``), their modes (``Corruption``, ``PartialWrite``, ``When``), and which of them the
explorer makes as moves. The names are the driver's, exactly as they appear in traces, in a run's
``faults`` counts and in scenario files: renaming one changes every trace, so they do not change.
Each is a ``StrEnum``: a member *is* its string (``FaultKind.CRASH == "crash"``, same hash), so a
schedule, a trace and a scenario file hold plain strings and compare equal to the members.

The explorer's fault moves are the same faults, made one at a time at a chosen moment instead of drawn
from a rate (its moves are ``(name, ...)`` tuples whose first item is one of these):

=====================================  =================================================================
explorer move                          the driver's fault
=====================================  =================================================================
``(CRASH, actor, after)``              ``crash``, mode ``When.AFTER`` / ``When.BEFORE``
``(REQUEST_EXCEPTION, actor, after)``  ``request_exception`` (the explorer raises ``RuntimeError``)
``(EMPTIED, key)``                     ``corrupt``, mode ``emptied``
``(MARKER_DELETED, key)``              ``corrupt``, mode ``marker_deleted``
``(MARKER_OUT_OF_RANGE, key)``         ``marker_out_of_range`` with ``g=`` ``GARBLED``, ``/column`` mode
``(MARKER_STALE, key, generation)``    ``corrupt``, mode ``marker_stale`` (``g=`` set back; each older one)
``(MARKER_RAISED, key, generation)``   none: the explorer's only (``g=`` raised by one, in range; the driver's
                                       raised markers are out of range, ``marker_out_of_range``)
``(REJECTED, key)``                    ``partial_write``, mode ``rejected`` (for good: no window)
``(ENDPOINT_DELETED, key)``            ``corrupt``, mode ``endpoint_deleted`` (records and marker deleted
                                       whole; drawn only where ``modes`` names it: ``deletions``); offered
                                       only with ``--fence-window``
=====================================  =================================================================
"""

from __future__ import annotations

from enum import StrEnum

from dnsplane.model import Generation


class FaultKind(StrEnum):
    """A kind of fault a scenario switches on and a schedule draws (in this order: see ``FAULT_KINDS``)."""

    PAUSE = "pause"  # an enactor stops (SIGSTOP) for longer than its lease
    CRASH = "crash"  # an actor crashes at any step and restarts (before or after its request ran)
    LATENCY_SPIKE = "latency_spike"  # provider requests slow down for a while
    THROTTLE = "throttle"  # provider requests fail with a Retryable error for a while
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"  # a write is applied, but its caller sees a timeout
    REDELIVER = "redeliver"  # a duplicate or out-of-order (older) plan is delivered to an idle enactor
    STORE_OUTAGE = "store_outage"  # every store call fails for a while
    CLOCK_SKEW = "clock_skew"  # actors' clocks disagree
    PLANNER_RESTART = "planner_restart"  # the planner restarts, forgetting its counter (or believing it is 0)
    HEALTH_FLAP = "health_flap"  # a target's health flaps at every check
    ABA = "aba"  # a target goes down and back up: content A -> B -> A
    ALL_UNHEALTHY = "all_unhealthy"  # every target of an endpoint is unhealthy for a while
    MALFORMED_PLAN = "malformed_plan"  # an invalid record set is published into the store
    CORRUPT = "corrupt"  # DNS records corrupted by hand (``Corruption``)
    # Issue 8: causes seen on a real server. New kinds go last: the schedule draws kinds in this order,
    # so a scenario without them replays its old seeds exactly.
    REQUEST_EXCEPTION = "request_exception"  # an actor's next store or provider command raises a non-DnsplaneError
    MARKER_OUT_OF_RANGE = "marker_out_of_range"  # a human writes a marker whose g= is negative, past 64 bits, garbage
    SECOND_OWNER = "second_owner"  # another installation (another owner id) writes an endpoint as its own
    PARTIAL_WRITE = "partial_write"  # the provider rejects one endpoint's writes, or applies only the marker
    HEALTH_AMNESIA = "health_amnesia"  # a target goes down, then the planner restarts and forgets its health
    # Issue 13 (new kinds go last, as above)
    HAND_MARKER = "hand_marker"  # a human writes a marker from scratch (no p=, so no seal): g= out of range
    DNS_SILENT = "dns_silent"  # the verifier's DNS queries of one endpoint (or all) go unanswered: TIMEOUT
    MARKER_IN_RANGE = "marker_in_range"  # a human sets g= to a kept plan's generation, or writes such a marker (no p=)
    RELABEL_OWNER = "relabel_owner"  # a human edits o=: another installation's marker relabelled as ours
    RIVAL_OWNER = "rival_owner"  # a second installation whose fleet adopts an endpoint too: it keeps taking it back
    MARKER_RESTORED = "marker_restored"  # a person puts back an older marker byte for byte (p= too), records kept
    STORE_ROLLBACK = "store_rollback"  # the store is put back to an older backup: later plans lost, DNS keeps them


class Corruption(StrEnum):
    """How a person corrupts an endpoint's records (the modes of ``FaultKind.CORRUPT``)."""

    EMPTIED = "emptied"  # records deleted, marker kept
    MARKER_DELETED = "marker_deleted"  # marker deleted, records kept
    MARKER_STALE = "marker_stale"  # marker's g= set back to a deleted plan
    # records and marker deleted whole; drawn only where a scenario's ``modes`` name it (``deletions``): a
    # ``corrupt`` site without ``modes`` draws from the three above, so old seeds replay (``faults.CORRUPTIONS``)
    ENDPOINT_DELETED = "endpoint_deleted"


class PartialWrite(StrEnum):
    """How the provider applies part of a write (the modes of ``FaultKind.PARTIAL_WRITE``)."""

    REJECTED = "rejected"  # the endpoint's writes are answered Rejected, the rest of a batch written
    MARKER_ONLY = "marker_only"  # the marker is applied, the records kept, and the answer is Applied


class InRange(StrEnum):
    """Which generation a person writes into a marker (the modes of ``FaultKind.MARKER_IN_RANGE``)."""

    HEAD = "head"  # g= the store's head, the rest of the marker kept (p= too: the seal breaks)
    KEPT = "kept"  # g= the generation of a plan the store keeps, the rest kept (the seal breaks)
    SCRATCH = "scratch"  # from scratch: g= a kept plan's, d= the records', no p= (no seal to break)


class When(StrEnum):
    """Whether a crash or a raised exception comes before the actor's request ran or after it took effect."""

    BEFORE = "before"
    AFTER = "after"


FAULT_KINDS: tuple[str, ...] = tuple(k.value for k in FaultKind)  # plain strings, in drawing order
ESCAPED = "escaped"  # not a fault: the count, in a run's ``faults``, of exceptions that escaped the interpreter
GARBLED = Generation(2**63 - 1)  # the ``g=`` a person writes into a marker in the explorer's MARKER_OUT_OF_RANGE move

# The explorer's fault moves, by their first item (see the table above): plain strings (the members'
# values), so that a move tuple's repr, pickle and hash are those of strings. In a ``match``, write them
# dotted (``case (vocabulary.EMPTIED, key)``): a bare name there would be a capture pattern.
CRASH: str = FaultKind.CRASH.value
REQUEST_EXCEPTION: str = FaultKind.REQUEST_EXCEPTION.value
EMPTIED: str = Corruption.EMPTIED.value
MARKER_DELETED: str = Corruption.MARKER_DELETED.value
MARKER_OUT_OF_RANGE: str = FaultKind.MARKER_OUT_OF_RANGE.value
MARKER_STALE: str = Corruption.MARKER_STALE.value
# an endpoint deleted whole by hand, records and marker (the fence's window)
ENDPOINT_DELETED: str = Corruption.ENDPOINT_DELETED.value
# Not a ``Corruption`` member: the driver draws corruptions in that enum's order, and old seeds must replay
MARKER_RAISED = "marker_raised"  # a marker's g= raised by hand by one, in range (its seal broken)
REJECTED: str = PartialWrite.REJECTED.value
# the explorer's moves that are a person's edit or the provider's doing: no actor moves
HUMAN_FAULTS: frozenset[str] = frozenset({EMPTIED, MARKER_DELETED, MARKER_OUT_OF_RANGE, MARKER_STALE, MARKER_RAISED,
                                          REJECTED, ENDPOINT_DELETED})
