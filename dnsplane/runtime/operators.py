"""The operators' controls, one implementation for the command line and the HTTP API: freeze, pin, drain,
confirm. Each checks what it is given against the fleet and the health the running instance knows,
then writes to the plan store in one transaction with its journal line (``store/base.py``); the running
``dnsplane up`` picks the store's state up (``App.operator_loop``).

A refusal is a ``Refused`` with the reasons, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dnsplane.config import Fleet
from dnsplane.model import Dial, Endpoint, EndpointKey, Generation, Target
from dnsplane.protocol.planner import serving
from dnsplane.store.base import Freeze, OperatorAction, Store


class Refused(Exception):
    """The control was refused: ``reasons`` say why; nothing was written."""

    def __init__(self, what: str, reasons: Sequence[str]) -> None:
        self.what, self.reasons = what, list(reasons)
        super().__init__(f"{what} refused; nothing changed: " + "; ".join(self.reasons))


@dataclass(frozen=True)
class DialSet:
    """A dial written: the one it replaced (or None), the endpoints a drain leaves, pinned targets down now."""

    dial: Dial
    replaced: Dial | None
    leaves: tuple[EndpointKey, ...] = ()
    down: tuple[str, ...] = ()


def freeze(store: Store, now: float, by: str, reason: str) -> Freeze | None:
    """Set the freeze; return the one already in force (then nothing changed), else None."""
    by, reason = printable(by), printable(reason)
    return store.set_freeze(Freeze(now, by, reason), OperatorAction(now, by, "freeze", reason))


def unfreeze(store: Store, now: float, by: str, reason: str) -> Freeze | None:
    """Lift the freeze; return the one lifted (None: there was none, nothing changed)."""
    return store.set_freeze(None, OperatorAction(now, printable(by), "unfreeze", printable(reason)))


def drain(store: Store, fleet: Fleet, up: Callable[[str], bool], target: str, now: float, by: str, reason: str,
          until: float | None) -> DialSet:
    """Drain ``target`` until ``until`` (None: no expiry). ``up(target_id)``: healthy or unknown, as the running
    instance knows it. Refused for a target of no endpoint, or where an endpoint would keep fewer healthy
    undrained targets than its floor (``min_targets``, and never none). Judged in the store's transaction, so
    two drains at once are judged one after the other."""
    by, reason = printable(by), printable(reason)
    hit = [ep for ep in fleet.endpoints if any(t.id == target for t in ep.targets)]
    if not hit:
        raise Refused(f"drain of {target}", [f"{target} is not a target of any endpoint of {fleet.source}"])

    def check(dials: list[Dial]) -> None:
        pins, drains = _in_force(dials, now)
        refused = []
        for ep in hit:
            served, healthy, kept_in = serving(ep, up, pins.get(str(ep.key), frozenset()), drains | {target})
            # refused where the guard would keep a drained target in and this one is served and healthy there
            # (whichever the guard keeps in, the endpoint is as short of its floor)
            if kept_in and any(t.id == target and up(t.id) for t in served):
                refused.append(_short(ep, healthy, kept_in))
        if refused:
            raise Refused(f"drain of {target}", refused)

    dial = Dial("drain", target, (), now, by, reason, until)
    was = store.set_dial(dial, OperatorAction(now, by, "drain", reason, target), check)
    return DialSet(dial, was, tuple(ep.key for ep in hit))


def pin(store: Store, fleet: Fleet, up: Callable[[str], bool], key: EndpointKey, targets: Sequence[str], now: float,
        by: str, reason: str, until: float | None) -> DialSet:
    """Pin endpoint ``key`` to ``targets`` until ``until``. Refused for an endpoint not in the fleet, a target not
    in the endpoint, fewer targets than its ``min_targets``, or pinned targets that the drains in force would
    leave below the endpoint's floor (drains apply within a pin: the same refusal as a drain's)."""
    by, reason = printable(by), printable(reason)
    subject = str(key)
    endpoint: Endpoint | None = next((ep for ep in fleet.endpoints if ep.key == key), None)
    if endpoint is None:
        raise Refused(f"pin of {subject}", [f"{subject} is not an endpoint of {fleet.source}"])
    wanted = tuple(dict.fromkeys(t.strip() for t in targets if t.strip()))
    ours = [t.id for t in endpoint.targets]
    unknown = [t for t in wanted if t not in ours]
    floor = max(1, endpoint.policy.min_targets)
    if unknown:
        raise Refused(f"pin of {subject}", [f"{', '.join(unknown)} not a target of {subject} (its targets: "
                                            f"{', '.join(ours)})"])
    if len(wanted) < floor:
        raise Refused(f"pin of {subject}", [f"{len(wanted)} target(s) pinned, fewer than its min_targets {floor}"])

    def check(dials: list[Dial]) -> None:
        _, drains = _in_force(dials, now)
        _, healthy, kept_in = serving(endpoint, up, frozenset(wanted), drains)
        if kept_in and any(up(t) for t in wanted):
            raise Refused(f"pin of {subject}", [_short(endpoint, healthy, kept_in) + " (drained: "
                                                + ", ".join(sorted(drains & set(wanted))) + ")"])

    dial = Dial("pin", subject, wanted, now, by, reason, until)
    was = store.set_dial(dial, OperatorAction(now, by, "pin", reason, subject), check)
    return DialSet(dial, was, down=tuple(t for t in wanted if not up(t)))


def lift(store: Store, kind: str, subject: str, now: float, by: str, reason: str) -> Dial | None:
    """Lift the pin or drain of ``subject``; the dial lifted (None: there was none, nothing changed)."""
    return store.lift_dial(kind, subject, OperatorAction(now, printable(by), "un" + kind, printable(reason), subject))


def confirm(store: Store, held: Generation | None, generation: Generation, now: float, by: str, reason: str) -> None:
    """Confirm the plan the zone guard holds as ``held``; refused when nothing is held or it is another one."""
    if held is None:
        raise Refused(f"confirmation of {generation}", ["no plan is held by the zone guard"])
    if held != generation:
        raise Refused(f"confirmation of {generation}", [f"the held plan is generation {held}, not {generation}"])
    store.record_action(OperatorAction(now, printable(by), "confirm", printable(reason), str(generation)))


def _in_force(dials: list[Dial], now: float) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    active = [d for d in dials if d.active(now)]
    return ({d.subject: frozenset(d.targets) for d in active if d.kind == "pin"},
            frozenset(d.subject for d in active if d.kind == "drain"))


def _short(ep: Endpoint, healthy: Sequence[Target], kept_in: Sequence[Target]) -> str:
    left = [t.id for t in healthy if t not in kept_in]
    return (f"{ep.key} would keep {len(left)} healthy undrained target(s) ({', '.join(left) or 'none'}), fewer "
            f"than its floor of {max(1, ep.policy.min_targets)} (min_targets, and never none)")


def printable(text: str) -> str:
    """``text`` with control characters (a terminal's escape sequences) shown as U+FFFD: who and why are printed
    by ``status`` and ``history`` to operators' terminals."""
    return "".join(ch if ch.isprintable() or ch == " " else "\ufffd" for ch in text)
