"""Regressions for protocol bugs the simulator found (chaos scenario, malformed plan + corruption).

1. An enactor that refused an endpoint's invalid newest content still reported the
   whole generation as fully applied; the collector then deleted the valid content
   that endpoint's marker still named (I3). Now it reports at most the generation
   before the refused one until a later change replaces it.
2. One endpoint whose desired content is invalid made the verifier's whole repair
   batch fail at the provider (it validates every write first), so no other
   endpoint was ever repaired, e.g. a hand-emptied one (I1, I4). Now the verifier
   does not repair toward an invalid set, and repairs the rest.
"""

from __future__ import annotations

from dnsplane.model import EndpointKey, Generation, Member, RecordSet
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.planner import Planner
from dnsplane.protocol.verifier import Verifier
from tests.protocol.harness import ZONE, Harness, endpoint

API = EndpointKey(f"api.{ZONE}", "A")
WEB = EndpointKey(f"web.{ZONE}", "A")
INVALID = RecordSet.of(30, [Member("lb-1", ("192.0.2.256",), 100)])


def test_enactor_does_not_report_a_refused_generation_as_applied() -> None:
    h = Harness()
    planner = Planner("planner", ZONE, (endpoint("api"), endpoint("web")))
    e = Enactor("e", ZONE)
    h.run(planner)
    h.run(e)
    assert h.store.applied()["e"] == 1
    h.store.publish(Generation(1), [(API, INVALID)], h.now, "rogue")  # generation 2: invalid for api
    h.run(e)
    assert e.stats["refused"] == 1
    assert h.store.applied()["e"] == 1, "a generation with a refused endpoint was reported fully applied"
    h.run(Collector())
    assert h.store.desired([API], Generation(1))[API].records.digest == h.provider.read([API])[API].records.digest


def test_verifier_repairs_the_rest_when_one_desired_set_is_invalid() -> None:
    h = Harness()
    planner = Planner("planner", ZONE, (endpoint("api"), endpoint("web")))
    h.run(planner)
    h.run(Enactor("e", ZONE))
    h.store.publish(Generation(1), [(API, INVALID)], h.now, "rogue")
    v = Verifier("verifier")
    h.run(v)  # first round: api is lagging behind generation 2, given one round of grace
    seen = h.provider.read([WEB])[WEB]
    h.checking = False
    h.provider.hand_edit(WEB, None, seen.marker)  # a human empties web
    h.run(v)  # second round: api's repair (invalid) and web's repair in one batch
    assert h.provider.read([WEB])[WEB].records == seen.records, "the invalid api plan blocked web's repair"
    assert v.stats["repairs"] == 1
