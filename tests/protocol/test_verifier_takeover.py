"""The verifier takes an adopted endpoint over from another installation once; a takeover whose reply is lost
(the provider applied it, the caller saw a timeout) counts as done, so another owner's marker there next is a
contest, not a second takeover (I7; simulator ``rivals`` seed 22)."""

from __future__ import annotations

from dnsplane.model import Desired, EndpointKey, Generation, Marker, Member, Observed, RecordSet
from dnsplane.protocol.messages import DesiredLoaded, Failed, Resolution, Resolved, Step, Tick, WriteBatch
from dnsplane.protocol.verifier import Problem, Verifier

API = EndpointKey("api.example.com.", "A")
OURS = RecordSet.of(60, [Member("lb-1", ("192.0.2.1",), 1000)])
THEIRS = RecordSet.of(60, [Member("other-lb", ("198.51.100.7",), 1000)])
RIVAL = Observed(THEIRS, Marker.after(None, Generation(1), THEIRS.digest, "rival"))


def round_seeing(verifier: Verifier, seen: Observed, now: float) -> Step:
    """One verifier round whose snapshot wants OURS at generation 2 and whose Resolve finds ``seen``."""
    verifier.handle(Tick(now))
    verifier.handle(DesiredLoaded(now, Generation(2), {API: Desired(Generation(2), OURS)}))
    return verifier.handle(Resolved(now, {API: Resolution("NOERROR", tuple(THEIRS.addresses()), None, seen)}))


def test_a_takeover_whose_reply_is_lost_counts_and_the_next_take_is_a_contest() -> None:
    verifier = Verifier("verifier")
    assert not isinstance(round_seeing(verifier, RIVAL, 0.0).request, WriteBatch)  # seen: waits a round
    takeover = round_seeing(verifier, RIVAL, 60.0).request
    assert isinstance(takeover, WriteBatch) and takeover.writes[0].key == API  # the takeover
    verifier.handle(Failed(61.0, "timeout (the write was applied)"))
    # the provider applied it; the other installation takes the endpoint back with the same state
    step = round_seeing(verifier, RIVAL, 120.0)
    assert not isinstance(step.request, WriteBatch), "taken over a second time"
    assert API in verifier.contested and verifier.last_problems[API] is Problem.CONTESTED
