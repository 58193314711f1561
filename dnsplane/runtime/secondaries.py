"""The servers watch (issue 12, part 3): every server that answers for the zone beside dnsplane's own is
asked, at a bounded rate, about the fleet's endpoints over real DNS, and compared with what the provider
holds (the primary). Asked: each secondary the embedded server feeds as a hidden primary
(``serve.notify``), and each ``up --verify-server HOST[:PORT]``: the servers the world resolves through,
Route 53's name servers for a hosted zone, a secondary fed by another primary. The protocol's verifier
repairs the provider; nothing dnsplane writes repairs what another server serves, so what this finds is
alerted. For each endpoint of a round, its marker TXT and its own address records are asked; findings:

- ``secondary-unreachable``: a round in which the server answered none of its queries (said once);
- ``secondary-truncated``: an answer with TC set whose TCP retry failed (resolvers get nothing whole there);
- ``secondary-nxdomain``: NXDOMAIN for a name the primary serves;
- ``secondary-empty``: NOERROR without an address of the endpoint's type;
- ``secondary-stale``: its marker names an older generation than the primary's (or there is none);
- ``secondary-drift``: at the primary's generation, an address the primary's records do not hold;

each alerted once it has lasted ``grace`` seconds (a NOTIFY and a transfer, or Route 53's propagation,
take a moment), again if it turns into another, and ``repaired`` once the endpoint is right again. An
endpoint the primary holds nothing for, or whose query got no answer this round, is not judged. Each
round asks ``per_round`` endpoints of each server, round robin over the fleet in zone order
(``--verify-rate`` endpoints a second, spread over the verifier's period), from a worker thread
(``dnsview.ask``: one socket, pipelined).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from dnsplane.model import EndpointKey, Marker, Observed, marker_name, read_marker
from dnsplane.providers.base import Provider
from dnsplane.runtime import dnsview

log = logging.getLogger("dnsplane.secondaries")

TIMEOUT = 1.0
WINDOW = 64

Alert = Callable[..., None]  # Alerts.emit


UNREACHABLE, TRUNCATED, NXDOMAIN, EMPTY, STALE, DRIFT = (
    "secondary-unreachable", "secondary-truncated", "secondary-nxdomain", "secondary-empty", "secondary-stale",
    "secondary-drift")


@dataclass
class SecondaryState:
    reachable: bool | None = None
    behind: dict[EndpointKey, tuple[str, float]] = field(default_factory=dict)  # endpoint -> problem, since when
    alerted: dict[EndpointKey, str] = field(default_factory=dict)  # endpoint -> the problem alerted
    checked: int = 0


class SecondaryWatch:
    def __init__(self, servers: Sequence[tuple[str, int]], keys: Sequence[EndpointKey], per_round: int,
                 grace: float, alert: Alert) -> None:
        self.servers = list(servers)
        self.keys = list(keys)
        self.per_round = max(1, per_round)
        self.grace = grace
        self.alert = alert
        self.state = {self.name(s): SecondaryState() for s in self.servers}
        self._next = 0

    @staticmethod
    def name(server: tuple[str, int]) -> str:
        return f"[{server[0]}]:{server[1]}" if ":" in server[0] else f"{server[0]}:{server[1]}"

    def follow(self, keys: Sequence[EndpointKey]) -> None:
        """Ask about ``keys`` from now on (the fleet of now: a reload may change it); what was found at an
        endpoint that left the fleet is forgotten (it is never asked about again, so never found right)."""
        self.keys = list(keys)
        kept = set(self.keys)
        for state in self.state.values():
            state.behind = {k: v for k, v in state.behind.items() if k in kept}
            state.alerted = {k: v for k, v in state.alerted.items() if k in kept}

    def sample(self) -> list[EndpointKey]:
        """The next ``per_round`` endpoints, round robin."""
        if not self.keys:
            return []
        n = min(self.per_round, len(self.keys))
        out = [self.keys[(self._next + i) % len(self.keys)] for i in range(n)]
        self._next = (self._next + n) % len(self.keys)
        return out

    def round(self, provider: Provider, now: float | None = None) -> None:
        """Ask each server about the next sample of endpoints; alert what changed (called in a worker thread)."""
        keys = self.sample()
        if not keys:
            return
        now = time.time() if now is None else now
        primary = provider.read(keys)
        markers = [dns.name.from_text(marker_name(k)) for k in keys]
        questions = []
        for key, name in zip(keys, markers, strict=True):
            questions += [(name, dns.rdatatype.TXT), (dns.name.from_text(key.name), dns.rdatatype.from_text(key.rtype))]
        for server in self.servers:
            got = dnsview.ask(questions, server[0], server[1], timeout=TIMEOUT, window=WINDOW)
            self._judge(self.name(server), keys, markers, [primary[k] for k in keys], got, now)

    def _judge(self, server: str, keys: list[EndpointKey], markers: list[dns.name.Name], primary: list[Observed],
               got: list[dnsview.Outcome], now: float) -> None:
        state = self.state[server]
        if not any(isinstance(g, dns.message.Message) for g in got):
            if state.reachable is not False:
                error = next((repr(g) for g in got if isinstance(g, Exception)), "no answer")
                self.alert("finding", f"server {server} answers nothing", server=server, problem=UNREACHABLE,
                           error=error)
            state.reachable = False
            return
        if state.reachable is False:
            self.alert("repaired", f"server {server} answers again", server=server, problem=UNREACHABLE)
        state.reachable = True
        for i, (key, name, ours) in enumerate(zip(keys, markers, primary, strict=True)):
            marker_answer, address_answer = got[2 * i], got[2 * i + 1]
            if (ours.marker is None or ours.records is None or not isinstance(marker_answer, dns.message.Message)
                    or not isinstance(address_answer, dns.message.Message)):
                continue  # nothing to compare with, or no answer this round: not judged
            state.checked += 1
            problem, detail, theirs = _problem(key, ours, name, marker_answer, address_answer)
            if problem is None:
                state.behind.pop(key, None)
                was = state.alerted.pop(key, None)
                if was is not None:
                    self.alert("repaired", f"{key} at server {server}: right again (was {was})", server=server,
                               endpoint=str(key), problem=was)
                continue
            since = state.behind.get(key, (problem, now))[1]
            state.behind[key] = (problem, since)
            if now - since >= self.grace and state.alerted.get(key) != problem:
                state.alerted[key] = problem
                self.alert("finding", f"{key} at server {server}: {detail} (for {now - since:.0f} s)", server=server,
                           endpoint=str(key), problem=problem, secondary_generation=theirs,
                           primary_generation=ours.marker.generation)

    def to_json(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, s in self.state.items():
            problems: dict[str, int] = {}
            for problem in s.alerted.values():
                problems[problem] = problems.get(problem, 0) + 1
            out[name] = {"reachable": s.reachable, "behind": len(s.behind), "stale": len(s.alerted),
                         "problems": problems, "checked": s.checked}
        return out


def _problem(key: EndpointKey, ours: Observed, marker_at: dns.name.Name, marker_answer: dns.message.Message,
             address_answer: dns.message.Message) -> tuple[str | None, str, int | None]:
    """What is wrong with one endpoint's answers at a server, compared with the primary's ``ours``, how to
    say it, and the generation its marker there names; (None, "", ...) when nothing is wrong."""
    assert ours.marker is not None and ours.records is not None
    if (marker_answer.flags | address_answer.flags) & dns.flags.TC:
        return TRUNCATED, "answer truncated (TC)", None
    if address_answer.rcode() == dns.rcode.NXDOMAIN:
        return NXDOMAIN, f"NXDOMAIN, the primary has generation {ours.marker.generation}", None
    name, rdtype = dns.name.from_text(key.name), dns.rdatatype.from_text(key.rtype)
    addresses = {rd.address for rr in address_answer.answer if rr.name == name and rr.rdtype == rdtype for rd in rr}
    if not addresses:
        return EMPTY, f"no {key.rtype} records ({dns.rcode.to_text(address_answer.rcode())})", None
    theirs = _marker(marker_answer, marker_at)
    generation = None if theirs is None else theirs.generation
    if theirs is None or theirs.generation < ours.marker.generation:
        seen = "no marker" if theirs is None else f"generation {theirs.generation}"
        return STALE, f"{seen}, the primary has {ours.marker.generation}", generation
    if theirs.generation == ours.marker.generation and not addresses <= set(ours.records.addresses()):
        extra = ", ".join(sorted(addresses - set(ours.records.addresses())))
        return DRIFT, f"serves {extra}, not in the primary's records at generation {generation}", generation
    return None, "", generation


def _marker(answer: dns.message.Message, name: dns.name.Name) -> Marker | None:
    """The dnsplane marker in a TXT answer at ``name`` (not its record-set parts ``dnsplane-rs <i>``)."""
    for rrset in answer.answer:
        if rrset.rdtype != dns.rdatatype.TXT or rrset.name != name:
            continue
        for rd in rrset:
            text = b"".join(rd.strings).decode(errors="replace")
            if not text.startswith("dnsplane-rs "):
                return read_marker(text)
    return None
