"""The big red button (issue 12, part 1): ``dnsplane freeze`` stops every automated write of a running
``dnsplane up`` on a real BIND, keeps doing so across a restart, and ``dnsplane unfreeze`` lets the
held-back plan and the held-back repair out.

What must hold, seen over real DNS and in the store:
- once ``freeze`` returns, nothing is written: a load balancer that goes down is planned out (the planner
  goes on), but BIND keeps serving it; a marker a person edits by hand is not repaired; the journal has
  no write after the freeze; the enactors, the collector and the verifier report their rounds held;
- the freeze survives a restart of ``up`` (kept in the store), and nothing is written after it either;
- ``unfreeze``: the newest plan is written and the hand-edited marker repaired;
- who froze and unfroze, and why, is in ``dnsplane history``; I1 and I2 hold throughout (the prober).

Waits are on rounds the actors report (``instance.json``), never on time: two held rounds of every
writer after the plan was published is the point at which, unfrozen, the change would have been
written (tests/realworld/test_health.py waits for that write within one enactor round).
"""

from __future__ import annotations

import time

from dnsplane.model import EndpointKey
from dnsplane.store.sqlite import SqliteStore
from tests.realworld.harness import Dnsplane, World, read_marker, wait_for

LB1, LB2, LB3 = "192.0.2.11", "192.0.2.12", "192.0.2.13"
API = "api.demo.test."
WWW = "www.demo.test."
WRITERS = ("enactor-1", "enactor-2", "collector", "verifier")
HAND_MARKER = "edited by hand during the freeze"


def rounds(up: Dnsplane) -> dict[str, tuple[int, str | None]]:
    """Per writer: rounds so far, and why the last was held (None: it ran)."""
    actors = (up.instance() or {}).get("actors") or {}
    return {name: (int(actors[name]["rounds"]), actors[name].get("held")) for name in WRITERS if name in actors}


def wait_held_rounds(up: Dnsplane, n: int, detail: object) -> None:
    """Wait until every writer has been held for ``n`` more rounds than now."""
    start = {name: r for name, (r, _) in rounds(up).items()}

    def held() -> bool:
        now = rounds(up)
        return len(now) == len(WRITERS) and all(
            why is not None and r >= start.get(name, 0) + n for name, (r, why) in now.items())
    wait_for(f"{n} held rounds of every writer", held, detail=detail)  # type: ignore[arg-type]


def writes_since(up: Dnsplane, since: float) -> list[str]:
    store = SqliteStore(up.data_dir / "store.sqlite")
    try:
        return [f"{e.actor} {e.action} {key} {e.before}->{e.after}"
                for key in (EndpointKey(API, "A"), EndpointKey(WWW, "A"))
                for e in store.history(key) if e.at >= since and e.action in ("write", "repair")]
    finally:
        store.close()


def test_a_freeze_stops_every_writer_holds_across_a_restart_and_unfreeze_lets_it_out(world: World) -> None:
    targets = [world.target("lb-1", LB1), world.target("lb-2", LB2), world.target("lb-3", LB3)]
    fleet = world.fleet(targets, {"api": ["lb-1", "lb-2", "lb-3"], "www": ["lb-1", "lb-3"]})
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    wait_for("every target in api's answer", lambda: prober.served(API) == {LB1, LB2, LB3}, detail=world.logs)
    wait_for("www served", lambda: prober.served(WWW) == {LB1, LB3}, detail=world.logs)
    written = read_marker(world.named, WWW)  # type: ignore[arg-type]
    assert written is not None and written.startswith("dnsplane g=")

    res = up.cli("freeze", "--reason", "INC-4411 health checks lie", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no automated write is in flight" in res.stdout, res.stdout
    frozen_at = time.time()
    head = up.store_head()

    world.listeners["lb-2"].down()
    world.hand_write_marker(WWW, HAND_MARKER)
    wait_for("the planner to plan lb-2 out (it plans on under a freeze)", lambda: up.store_head() > head,
             detail=world.logs)
    wait_held_rounds(up, 2, world.logs)
    assert prober.served(API) == {LB1, LB2, LB3}, "a plan was written under the freeze"
    assert read_marker(world.named, WWW) == HAND_MARKER, "the verifier repaired under the freeze"  # type: ignore[arg-type]
    assert writes_since(up, frozen_at) == []
    status = up.cli("status")
    assert "FROZEN" in status.stdout and "INC-4411" in status.stdout and "tester" in status.stdout, status.stdout
    assert "held back by the freeze" in status.stdout, status.stdout

    # a restart keeps the freeze: it is in the store, read before any actor starts
    assert up.stop() == 0, up.log_tail()
    up.start()
    wait_for("the restarted instance to report the freeze",
             lambda: ((up.instance() or {}).get("frozen") or {}).get("quiet"), detail=world.logs)
    wait_held_rounds(up, 2, world.logs)
    assert prober.served(API) == {LB1, LB2, LB3}, "a plan was written under the freeze, after the restart"
    assert read_marker(world.named, WWW) == HAND_MARKER  # type: ignore[arg-type]
    assert writes_since(up, frozen_at) == []

    res = up.cli("unfreeze", "--reason", "checks fixed", "--by", "tester")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for("lb-2 planned out to be written", lambda: prober.served(API) == {LB1, LB3}, detail=world.logs)
    wait_for("the hand-edited marker to be repaired",
             lambda: (read_marker(world.named, WWW) or "").startswith("dnsplane g="),  # type: ignore[arg-type]
             detail=world.logs)
    history = up.cli("history")
    assert history.returncode == 0, history.stderr
    lines = [ln for ln in history.stdout.splitlines() if "tester" in ln]
    assert len(lines) == 2 and "freeze" in lines[0] and "INC-4411" in lines[0], history.stdout
    assert "unfreeze" in lines[1] and "checks fixed" in lines[1], history.stdout
    up.wait_every_actor_running()
    prober.stop()
    prober.assert_invariants(world.logs)
