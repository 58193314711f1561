"""An endpoint restored by hand, byte for byte, to the state a held write read, against a real BIND9 and
SQLite (docs/design.md "The fence's window, and the write token that closes it"; the simulator's twin:
tests/sim/test_restored_markers.py).

Plan 1 (content A) is written: BIND serves A under marker M1, whose chain token ``p=`` names the nothing
it replaced. A slow enactor S reads the endpoint (M1 over A) and decides its write of plan 2 (content B,
expecting M1); its request is held. Another enactor writes plan 2 (B) and plan 3 (A again: A -> B -> A),
and a person restores the endpoint byte for byte to what BIND held at plan 1 (M1's TXT over A's records:
a backup put back) with one raw UPDATE. The endpoint is now exactly what S's compare-and-swap expects, so
only the store's fence and the zone's write token can tell S's write is stale. Since the fence and the token
are on every write, they do:

- (a) S's held request run as it is (``Interpreter.run``): the store's fence sees plan 3, newer than S's
  plan, and the write is not sent (``Conflict(newer=3)``);
- (b) the stall placed after the writer's half (``execute.fence_read`` read before plan 3 is published,
  the request reaching BIND after the restore): the token S read was moved by plan 3's write, BIND refuses
  the UPDATE, and the write comes back ``Conflict``.

Either way B is never served after plan 3, and the restored marker is left as the person put it. The
control (``old_cut``): the writer's half as it was before, none for a batch whose every write is over a
marker with ``p=`` (tests/sim/test_restored_markers.py ``fence_only_unchained_writes``); S's write lands,
and BIND serves plan 2's B after plan 3's A (I2).
"""

from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rdatatype
import dns.rrset
import pytest

from dnsplane import execute
from dnsplane.execute import Interpreter, drain
from dnsplane.model import Applied, Conflict, EndpointKey, Generation, RecordSet, marker_name
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.messages import Tick, WriteBatch, WriteDone
from tests.fakes import ZONE, fence_only_unchained_writes, key, run_held
from tests.providers.test_rfc2136_fence import NEW, OLD, addresses, served, until_write
from tests.providers.test_rfc2136_fence_window import World, world  # noqa: F401 - fixture
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

RESTORED = key("restored.demo.test")
A, B = OLD, NEW

Snapshot = dict[tuple[str, int], dns.rrset.RRset]
def snapshot(server: NamedServer, k: EndpointKey) -> Snapshot:
    """What BIND answers for the endpoint's records and its marker TXT: the RRsets as served (TTL and
    rdata)."""
    held: Snapshot = {}
    for name, rdtype in ((k.name, dns.rdatatype.A), (marker_name(k), dns.rdatatype.TXT)):
        r = dns.query.tcp(dns.message.make_query(name, rdtype), server.host, port=server.port, timeout=5)
        for rrset in r.answer:
            if rrset.rdtype == rdtype:
                held[(name, rdtype)] = rrset
    return held


def wire(held: Snapshot) -> dict[tuple[str, int], tuple[int, list[bytes]]]:
    """A snapshot byte for byte: per RRset its TTL and its rdatas' wire forms (in a set's order)."""
    return {at: (rrset.ttl, sorted(rd.to_wire() for rd in rrset)) for at, rrset in held.items()}


def restore_by_hand(server: NamedServer, k: EndpointKey, held: Snapshot) -> None:
    """A person puts back the endpoint's records and marker TXT as ``held`` (one raw TSIG'd UPDATE, no
    prerequisite, the zone's write token untouched)."""
    u = server.update()
    u.delete(k.name, dns.rdatatype.A)
    u.delete(marker_name(k), dns.rdatatype.TXT)
    for rrset in held.values():
        u.add(rrset.name, rrset.ttl, *rrset)
    server.send(u)


def restored_under_a_held_write(
        at: World, monkeypatch: pytest.MonkeyPatch, *, stall_after_fence_read: bool,
        old_cut: bool) -> tuple[WriteDone, list[set[str]], Snapshot, Enactor, Interpreter]:
    """Run the story of the module docstring; return S's reply, what BIND served after each step (plan 1,
    plan 2, plan 3, the restore, S's write), the snapshot taken at plan 1, S and its interpreter."""
    server, store = at.named, at.store
    if old_cut:
        monkeypatch.setattr(execute, "fence_read", fence_only_unchained_writes(execute.fence_read))
    ex = Interpreter(store, at.provider)
    fast, fast_ex = Enactor("fast", ZONE), Interpreter(store, at.other)
    now = time.time()

    def publish_and_write(head: int, content: RecordSet) -> None:
        assert store.publish(Generation(head), [(RESTORED, content)], now, "planner") == head + 1
        drain(fast, Tick(now), fast_ex, now)
        assert fast.applied_upto == head + 1
        seen.append(served(server, RESTORED))

    seen: list[set[str]] = []
    publish_and_write(0, A)
    at_plan_1 = snapshot(server, RESTORED)
    m1 = at.provider.read([RESTORED])[RESTORED].marker
    assert m1 is not None and m1.generation == 1 and m1.prev, m1  # a chained marker: the old cut left it to CAS
    assert store.publish(Generation(1), [(RESTORED, B)], now, "planner") == 2
    slow = Enactor("slow", ZONE)
    held = until_write(slow, Tick(now), ex, now)  # S read M1 over A and decided plan 2's write
    assert isinstance(held.request, WriteBatch) and held.request.fence == 2
    assert [(w.key, w.expect, w.records) for w in held.request.writes] == [(RESTORED, m1, B)]
    drain(fast, Tick(now), fast_ex, now)  # plan 2 written by the other enactor
    assert fast.applied_upto == 2
    seen.append(served(server, RESTORED))
    fenced = execute.fence_read(store, at.provider, held.request) if stall_after_fence_read else None
    if fenced is not None and not old_cut:  # the store shows no newer plan yet: only the token can refuse it
        assert fenced.stale == {} and fenced.token, fenced
    publish_and_write(2, A)  # plan 3: A again, under marker M3
    assert wire(snapshot(server, RESTORED)) != wire(at_plan_1)  # M3 is not M1
    restore_by_hand(server, RESTORED, at_plan_1)
    assert wire(snapshot(server, RESTORED)) == wire(at_plan_1)
    seen.append(served(server, RESTORED))
    # S's request reaches BIND after the restore (with ``fenced``: its writer's half read before plan 3)
    done = run_held(ex, "slow", held, fenced, now)
    seen.append(served(server, RESTORED))
    assert seen[:4] == [addresses(A), addresses(B), addresses(A), addresses(A)], seen
    return done, seen, at_plan_1, slow, ex


@pytest.mark.parametrize("stall_after_fence_read", [False, True], ids=["held-request", "stalled-after-fence-read"])
def test_a_held_write_over_an_endpoint_restored_to_the_state_it_read_is_refused(
        world: World, monkeypatch: pytest.MonkeyPatch, stall_after_fence_read: bool) -> None:  # noqa: F811
    """S's write of plan 2 comes back ``Conflict``: named by the store's fence (plan 3) when the writer's
    half is read with the request, by the write token (moved by plan 3's write) when it was read before
    plan 3. B is never served after plan 3, the restored marker stays as put back, and S, fed the reply,
    never writes B."""
    done, seen, at_plan_1, slow, ex = restored_under_a_held_write(
        world, monkeypatch, stall_after_fence_read=stall_after_fence_read, old_cut=False)
    m1 = world.provider.read([RESTORED])[RESTORED].marker
    newer = None if stall_after_fence_read else Generation(3)
    assert done.results == [Conflict(RESTORED, m1, newer=newer)], done.results
    assert seen[4] == addresses(A), f"I2: plan 2's content was served after plan 3's; BIND served, in order: {seen}"
    assert wire(snapshot(world.named, RESTORED)) == wire(at_plan_1), "the restored endpoint was written"
    drain(slow, done, ex, time.time())
    assert served(world.named, RESTORED) == addresses(A)


@pytest.mark.parametrize("stall_after_fence_read", [False, True], ids=["held-request", "stalled-after-fence-read"])
def test_control_with_the_fence_and_token_on_unchained_writes_only_the_held_write_lands(
        world: World, monkeypatch: pytest.MonkeyPatch, stall_after_fence_read: bool) -> None:  # noqa: F811
    """The old cut (no fence nor token for a write over a marker with ``p=``): the restored endpoint is
    exactly what S's compare-and-swap expects, BIND applies the UPDATE, and plan 2's B is served after plan
    3's A (I2). The window is real; the fence and the token, not the provider's CAS, close it."""
    done, seen, _, _, _ = restored_under_a_held_write(
        world, monkeypatch, stall_after_fence_read=stall_after_fence_read, old_cut=True)
    assert done.results == [Applied(RESTORED)], done.results
    assert seen[4] == addresses(B), f"BIND served, in order: {seen}"
