"""The harness can fail: the prober reports I1 and I2 violations it is shown (synthetic timelines, and
real answers from ``named`` edited by hand), honours declared gaps only within their bound, and
``named`` restarted on its port keeps the zone's dynamic updates."""

from __future__ import annotations

import socket
import time

import pytest

from tests.realworld.harness import (
    Observation,
    Prober,
    World,
    actor_problems,
    addresses,
    delete_records,
    every_actor_running,
    put_cname,
    wait_for,
    write_marker,
)
from tests.servers.named import NamedServer

EP = ("api.demo.test.", "A")
MK = "_dnsplane-a.api.demo.test."


def a(t: float, *addrs: str, rcode: str = "NOERROR") -> Observation:
    return Observation(t, t + 0.001, EP[0], "A", EP, rcode, addresses=frozenset(addrs))


def txt(t: float, text: str | None, content: tuple[str, ...] | None = None) -> Observation:
    return Observation(t, t + 0.001, MK, "TXT", EP, "NOERROR", marker=text, rdatas=0 if text is None else 1,
                       content=None if content is None else frozenset(content))


def fed(*obs: Observation, answers: str = "all") -> Prober:
    p = Prober(("127.0.0.1", 9), [EP], answers=answers)
    p.t0 = 0.0
    for o in obs:
        p.record(o)
    return p


def kinds(p: Prober) -> list[str]:
    return [v.invariant for v in p.violations()]


def test_i1_empty_or_nxdomain_after_served_is_a_violation() -> None:
    assert kinds(fed(a(1, "192.0.2.1"), a(2, rcode="NXDOMAIN"))) == ["I1"]
    assert kinds(fed(a(1, "192.0.2.1"), a(2))) == ["I1"]
    # before the name was ever served, empty is not a violation; a timeout is never one
    assert kinds(fed(a(1), a(2, rcode="NXDOMAIN"), a(3, "192.0.2.1"), a(4, rcode="TIMEOUT"))) == []
    p = fed(a(1, "192.0.2.1"), a(2, rcode="NXDOMAIN"))
    with pytest.raises(AssertionError, match=r"(?s)I1 at \+2\.000s.*api\.demo\.test\..*NXDOMAIN"):
        p.assert_invariants()


def test_a_declared_gap_excuses_empty_answers_only_until_its_bound() -> None:
    p = fed(a(1, "192.0.2.1"))
    p.allow_gap(EP[0], within=2.0, reason="test deletes it")
    start = p._gaps[EP][0].start
    for o in (a(start + 0.5), a(start + 1.5, "192.0.2.1")):
        p.record(o)
    assert kinds(p) == []
    p.record(a(start + 1.8))  # a second outage after the gap closed is not excused
    assert kinds(p) == ["I1"]

    late = fed(a(1, "192.0.2.1"))
    late.allow_gap(EP[0], within=2.0)
    start = late._gaps[EP][0].start
    for o in (a(start + 0.5), a(start + 2.5), a(start + 3, "192.0.2.1")):
        late.record(o)
    assert kinds(late) == ["I1"] and "did not close within 2s" in late.violations()[0].message

    still_open = fed(a(1, "192.0.2.1"))
    still_open.allow_gap(EP[0], within=5.0)
    still_open.record(a(still_open._gaps[EP][0].start + 0.5))
    assert kinds(still_open) == ["I1"] and "still open" in still_open.violations()[0].message


def test_i2_generation_regress_two_contents_and_a_marker_served_again() -> None:
    assert kinds(fed(txt(1, "dnsplane g=5 d=aa p=x.1"), txt(2, "dnsplane g=4 d=bb p=y.1"))) == ["I2"]
    assert kinds(fed(txt(1, "dnsplane g=5 d=aa p=x.1"), txt(2, "dnsplane g=5 d=bb p=x.2"))) == ["I2"]
    went_back = fed(txt(1, "dnsplane g=5 d=aa p=x.1"), txt(2, "dnsplane g=6 d=bb p=y.1"),
                    txt(3, "dnsplane g=6 d=bb p=y.1"), txt(4, "dnsplane g=5 d=aa p=x.1"))
    assert "I2" in kinds(went_back)
    # rising generations, a missing marker, and a hand-written marker the test declared are fine
    ok = fed(txt(1, "dnsplane g=5 d=aa p=x.1"), txt(2, None), txt(3, "dnsplane g=99 d=zz"),
             txt(4, "dnsplane g=7 d=cc p=z.1"))
    ok.ignore_marker("dnsplane g=99 d=zz")
    assert kinds(ok) == []
    # a generation out of the store's range is a corrupt marker, not a generation served
    assert kinds(fed(txt(1, "dnsplane g=99999999999999999999 d=aa"), txt(2, "dnsplane g=5 d=bb p=y.1"))) == []


def test_i2_content_of_an_older_generation_between_two_newer_markers() -> None:
    old, new = ("192.0.2.1", "192.0.2.2"), ("192.0.2.1",)
    stale = fed(txt(1, "dnsplane g=5 d=aa p=x.1", old), a(2, *old), txt(3, "dnsplane g=6 d=bb p=y.1", new),
                a(4, *old), txt(5, "dnsplane g=6 d=bb p=y.1", new))
    assert kinds(stale) == ["I2"] and "content of generation 5" in stale.violations()[0].message
    # the same answer while the marker moved in between cannot be told apart: no violation
    moving = fed(txt(1, "dnsplane g=5 d=aa p=x.1", old), a(2, *old), txt(3, "dnsplane g=6 d=bb p=y.1", new))
    assert kinds(moving) == []
    # weighted answers (one address of the live set) are checked by inclusion
    weighted = fed(txt(1, "dnsplane g=6 d=bb p=y.1"), a(2, "192.0.2.1"), txt(3, "dnsplane g=6 d=bb p=y.1"),
                   answers="weighted")
    weighted.declare_content(EP[0], 6, new)
    weighted.declare_content(EP[0], 5, old)
    assert kinds(weighted) == []


def test_actor_problems_reads_actors_or_the_log() -> None:
    now = 1000.0
    inst = {"actors": {"planner": {"last_success": 999.0}, "verifier": {"last_success": 900.0, "last_error": "x"},
                       "enactor-1": {"last_success": None},
                       "health": {"rounds": 0, "last_ok": None, "failures": 0, "last_error": None},
                       "demo": {"rounds": 0, "last_ok": None, "failures": 1, "last_error": "OSError"}}}
    problems = actor_problems(inst, within=5, now=now)
    assert [p.split(":")[0] for p in problems] == ["demo", "enactor-1", "verifier"]
    assert actor_problems({}, within=5, log="12:00:00.000 ERROR dnsplane.runtime actor round failed actor=v")
    assert actor_problems({}, within=5, log="12:00:00.000 INFO ok") == []
    assert every_actor_running({"actors": {"planner": {"last_ok": time.time()}}}, within=5)
    assert actor_problems({"actors": {"planner": {"last_ok": 998.0}}}, within=5, now=now, since=999.0)
    assert not actor_problems({"actors": {"planner": {"last_ok": 999.5}}}, within=5, now=now, since=999.0)


def test_the_prober_sees_hand_edits_on_named(named: NamedServer) -> None:
    u = named.update()
    u.add("api.demo.test.", 30, "A", "192.0.2.1")
    u.add(MK, 30, "TXT", '"dnsplane g=5 d=aa p=x.1"')
    named.send(u)
    with Prober((named.host, named.port), [EP]) as prober:
        wait_for("the name served", lambda: prober.served(EP[0]) == {"192.0.2.1"})
        write_marker(named, EP[0], "dnsplane g=3 d=bb p=y.1")
        delete_records(named, EP[0])
        wait_for("the prober to see both edits", lambda: sorted(set(kinds(prober))) == ["I1", "I2"])
    with pytest.raises(AssertionError, match="I1 at"):
        prober.assert_invariants()


def test_the_prober_reads_the_marker_and_its_content_in_either_layout(named: NamedServer) -> None:
    """The marker TXT as providers/marker_txt.py lays it out (the marker, then "dnsplane-rs <i>" parts) and
    as the RFC 2136 provider wrote it before (one record: the marker, then the JSON): the same marker, the
    same content, one marker record (not "several TXT records", which the I2 check leaves out)."""
    text = "dnsplane g=5 d=aa p=x.1"
    json = '{"ttl":30,"answer":"weighted","members":[["lb-1",["192.0.2.1"],3],["lb-2",["192.0.2.2"],0]]}'
    layouts = {"new": [f'"{text}"', '"dnsplane-rs 1" "' + json[40:].replace('"', '\\"') + '"',
                       '"dnsplane-rs 0" "' + json[:40].replace('"', '\\"') + '"'],
               "old": [f'"{text}" "' + json.replace('"', '\\"') + '"']}
    prober = Prober((named.host, named.port), [EP])
    for values in layouts.values():
        u = named.update()
        u.replace(MK, 30, "TXT", *values)
        named.send(u)
        seen = prober.query(EP, MK, "TXT")
        assert (seen.marker, seen.content, seen.rdatas) == (text, frozenset({"192.0.2.1"}), 1), values


def test_named_restart_keeps_dynamic_updates_on_the_same_port(named: NamedServer) -> None:
    u = named.update()
    u.add("api.demo.test.", 30, "A", "192.0.2.1")
    named.send(u)
    port = named.port
    named.restart()
    assert named.port == port
    assert addresses((named.host, named.port), "api.demo.test.") == {"192.0.2.1"}


def test_world_needs_nothing_but_named(world: World) -> None:
    t = world.target("lb-1", "192.0.2.1")
    assert world.listeners["lb-1"].is_up
    world.listeners["lb-1"].down()
    assert not world.listeners["lb-1"].is_up
    world.listeners["lb-1"].up()
    fleet = world.fleet([t], {"api": ["lb-1"]})
    assert "rfc2136" in fleet.read_text()


def test_dnsplane_restart_on_the_embedded_provider_keeps_names_served(embedded_world: World) -> None:
    w = embedded_world
    fleet = w.fleet([w.target("lb-1", "192.0.2.11"), w.target("lb-2", "192.0.2.12")],
                    {"api": ["lb-1", "lb-2"]}, provider="embedded")
    up = w.dnsplane(fleet, start=False)
    picked = up.dns
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:  # takes the port picked for it
        squatter.bind(picked)
        up.start()
    assert up.dns != picked and up.runs == 2, "a taken port is replaced at the first start"
    prober = w.prober(fleet, server=up.dns)
    assert prober.answers == "weighted"
    w.wait_served(up.dns, fleet)
    second = w.dnsplane(fleet, start=False, name="same-port", dns_port=up.dns_port)
    second.start(wait=False)
    assert second.wait_exit() != 0 and not second.running  # the DNS port is taken: it cannot start
    first, mark = up.pid, up.log_mark()
    up.restart()
    assert up.pid != first and up.running
    assert up.wait_log(r"--- run (\d) stdout ---\ndnsplane is serving", since=mark).group(1) == str(up.runs)
    wait_for("an answer from the restarted process", lambda: any(
        o.sent > prober.now() - 0.5 and o.addresses for o in prober.snapshot()[-4:]), detail=w.logs)
    prober.stop()
    prober.assert_invariants(w.logs)
    assert up.stop() == 0, up.log_tail()
    assert f"--- run {up.runs} stderr ---" in up.log()


def test_an_answer_through_a_cname_is_what_a_client_gets(named: NamedServer) -> None:
    u = named.update()
    u.add("api.demo.test.", 30, "A", "192.0.2.1")
    u.add("other.demo.test.", 30, "A", "192.0.2.9")
    named.send(u)
    with Prober((named.host, named.port), [EP]) as prober:
        wait_for("the name served", lambda: prober.served(EP[0]) == {"192.0.2.1"})
        put_cname(named, EP[0], "other.demo.test.")
        wait_for("the CNAME's target served", lambda: prober.served(EP[0]) == {"192.0.2.9"})
        put_cname(named, EP[0], "nowhere.demo.test.")
        wait_for("I1: a CNAME to nothing", lambda: kinds(prober) == ["I1"])
    assert "CNAME nowhere.demo.test." in prober.timeline(EP)


def test_an_endpoint_never_served_fails_the_check_unless_waived() -> None:
    p = fed(a(1), a(2, rcode="NXDOMAIN"))
    assert p.violations() == []
    with pytest.raises(AssertionError, match=r"never served while probed: api\.demo\.test\. A"):
        p.assert_invariants()
    p.assert_invariants(require_served=False)
    p.retire_endpoint(EP[0])
    p.assert_invariants()



def test_a_name_emptied_while_dnsplane_is_stopped_is_a_violation_until_repaired(world: World) -> None:
    fleet = world.fleet([world.target("lb-1", "192.0.2.11")], {"api": ["lb-1"]})
    up = world.dnsplane(fleet)
    prober = world.prober(fleet)
    wait_for("api served", lambda: prober.served(EP[0]), detail=world.logs)
    assert up.stop() == 0
    world.hand_delete_records(EP[0], within=0.5)  # nothing can repair it in time: dnsplane is stopped
    wait_for("the prober to report the gap overrun", lambda: any(
        "did not close within 0.5s" in v.message for v in prober.violations()))
    up.start()
    wait_for("the repair once dnsplane runs again", lambda: prober.gap_closed(EP[0]), detail=world.logs)
    prober.stop()
    assert kinds(prober) == ["I1"]
    with pytest.raises(AssertionError, match=r"(?s)did not close within 0\.5s.*<== here"):
        prober.assert_invariants()
