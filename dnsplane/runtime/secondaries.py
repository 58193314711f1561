"""The secondaries watch (issue 12, part 3): every secondary the embedded server feeds as a hidden primary
(``serve.notify``) is asked, at a bounded rate, for the markers of the fleet's endpoints, and compared with
what the embedded provider holds. A secondary is what the world resolves; the protocol's verifier repairs
the primary, and nothing dnsplane writes can repair a secondary, so what this finds is alerted:

- ``secondary-unreachable``: a round in which the secondary answered none of its queries;
- ``secondary-stale``: an endpoint whose marker at the secondary names an older generation than the
  primary's (or none) for longer than ``grace`` seconds (a NOTIFY and a transfer take a moment);

and ``repaired`` once it is right again. Each round asks ``per_round`` endpoints of each secondary, round
robin over the fleet in zone order (``--verify-rate`` endpoints a second, spread over the verifier's period),
from a worker thread (``dnsview.ask``: one socket, pipelined).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.message
import dns.name
import dns.rdatatype

from dnsplane.model import EndpointKey, Marker, marker_name, read_marker
from dnsplane.providers.base import Provider
from dnsplane.runtime import dnsview

log = logging.getLogger("dnsplane.secondaries")

TIMEOUT = 1.0
WINDOW = 64

Alert = Callable[..., None]  # Alerts.emit


@dataclass
class SecondaryState:
    reachable: bool | None = None
    behind: dict[EndpointKey, float] = field(default_factory=dict)  # endpoint -> since when
    alerted: set[EndpointKey] = field(default_factory=set)  # stale endpoints alerted (repaired is said once)
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
        return f"{server[0]}:{server[1]}"

    def sample(self) -> list[EndpointKey]:
        """The next ``per_round`` endpoints, round robin."""
        if not self.keys:
            return []
        n = min(self.per_round, len(self.keys))
        out = [self.keys[(self._next + i) % len(self.keys)] for i in range(n)]
        self._next = (self._next + n) % len(self.keys)
        return out

    def round(self, provider: Provider, now: float | None = None) -> None:
        """Ask each secondary for the next sample's markers; alert what changed (called in a worker thread)."""
        keys = self.sample()
        if not keys:
            return
        now = time.time() if now is None else now
        primary = provider.read(keys)
        names = [dns.name.from_text(marker_name(k)) for k in keys]
        questions = [(n, dns.rdatatype.TXT) for n in names]
        for server in self.servers:
            got = dnsview.ask(questions, server[0], server[1], timeout=TIMEOUT, window=WINDOW)
            self._judge(self.name(server), keys, names, [primary[k].marker for k in keys], got, now)

    def _judge(self, server: str, keys: list[EndpointKey], names: list[dns.name.Name], want: list[Marker | None],
               got: list[dnsview.Outcome], now: float) -> None:
        state = self.state[server]
        answered = [isinstance(g, dns.message.Message) for g in got]
        if not any(answered):
            if state.reachable is not False:
                error = next((repr(g) for g in got if isinstance(g, Exception)), "no answer")
                self.alert("finding", f"secondary {server} answers nothing", server=server,
                           problem="secondary-unreachable", error=error)
            state.reachable = False
            return
        if state.reachable is False:
            self.alert("repaired", f"secondary {server} answers again", server=server, problem="secondary-unreachable")
        state.reachable = True
        for key, name, ours, outcome in zip(keys, names, want, got, strict=True):
            if not isinstance(outcome, dns.message.Message) or ours is None:
                continue
            state.checked += 1
            theirs = _marker(outcome, name)
            if theirs is not None and theirs.generation >= ours.generation:
                state.behind.pop(key, None)
                if key in state.alerted:
                    state.alerted.discard(key)
                    self.alert("repaired", f"{key} at secondary {server}: at generation {theirs.generation} again",
                               server=server, endpoint=str(key), problem="secondary-stale")
                continue
            since = state.behind.setdefault(key, now)
            if now - since >= self.grace and key not in state.alerted:
                state.alerted.add(key)
                seen = "no marker" if theirs is None else f"generation {theirs.generation}"
                self.alert("finding", f"{key} at secondary {server}: {seen}, the primary has {ours.generation} "
                           f"(for {now - since:.0f} s)", server=server, endpoint=str(key), problem="secondary-stale",
                           secondary_generation=None if theirs is None else theirs.generation,
                           primary_generation=ours.generation)

    def to_json(self) -> dict[str, dict[str, object]]:
        return {name: {"reachable": s.reachable, "behind": len(s.behind), "stale": len(s.alerted),
                       "checked": s.checked} for name, s in self.state.items()}


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
