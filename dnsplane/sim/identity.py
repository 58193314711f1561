"""The explorer's view of values: what of an actor counts toward a state's identity, and cheap copies.

Owns:
- ``actor_part`` / ``canon``: an actor (with its pending request) as a hashable value made of the
  fields that count toward its state. Which fields count is declared on the actors themselves, as
  dataclass field metadata (``dnsplane.protocol.identity``: ``CONFIG`` and ``NOTE`` fields never count,
  ``ROUND`` fields not while the actor is between rounds); this module only reads the declarations.
- ``ROUND_STARTS``: for each actor class, the request that starts its round (while it waits on it, or
  is idle, its ``ROUND`` fields are dead), and ``reset_round``, which gives them their defaults then.
- ``monitor_part``: what the monitor's later checks read.
- ``copy_actor`` / ``copy_value`` / ``copy_reply``: copies of the mutable parts only (records, markers, plans,
  endpoints and messages are frozen and shared; ``CONFIG`` fields are shared too). The store and the
  provider copy themselves (``MemoryStore.fork``, ``MemoryProvider.fork``).

Guarantees: two actors with equal parts act alike on every future event (given the declarations are
true, which tests/sim/test_explore.py checks against the unreduced search), and a copy shares nothing
that either side changes in place.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from typing import Any

from dnsplane.model import RecordSet
from dnsplane.protocol.collector import Collector
from dnsplane.protocol.enactor import Enactor
from dnsplane.protocol.identity import IDENTITY
from dnsplane.protocol.legacy import LegacyEnactor
from dnsplane.protocol.messages import LoadDesired, ReadHead, ReadWatermark, Request
from dnsplane.protocol.verifier import Verifier
from dnsplane.sim.invariants import Monitor

# The request that starts each actor's round: while the actor waits on it, or is idle, the fields it
# marks ``ROUND`` hold what the previous round left and are overwritten before any read (reduction 2 in
# dnsplane/sim/explore.py). An actor class with ``ROUND`` fields must be listed (checked at first use).
ROUND_STARTS: dict[type, type] = {
    Enactor: ReadHead,
    LegacyEnactor: LoadDesired,
    Verifier: LoadDesired,
    Collector: ReadWatermark,
}


def _names(t: type, kinds: frozenset[str | None]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(t) if f.metadata.get(IDENTITY) in kinds)


_COUNTED = frozenset({None})
_COUNTED_OUTSIDE_ROUND = frozenset({None, "round"})
# (class, between rounds?) -> the names of the fields that count, in declaration order
_FIELDS: dict[tuple[type, bool], tuple[str, ...]] = {}
_SHARED: dict[type, frozenset[str]] = {}  # class -> its CONFIG fields (copies share them)
_ROUND_DEFAULTS: dict[type, tuple[tuple[str, Callable[[], Any]], ...]] = {}


def _counted(t: type, between_rounds: bool) -> tuple[str, ...]:
    names = _FIELDS.get((t, between_rounds))
    if names is None:
        names = _FIELDS[(t, between_rounds)] = _names(t, _COUNTED if between_rounds else _COUNTED_OUTSIDE_ROUND)
        if not between_rounds and t not in ROUND_STARTS and _names(t, frozenset({"round"})):
            raise TypeError(f"{t.__name__} marks ROUND fields but no round-starting request is known for it")
    return names


def _between_rounds(actor: Any, pending: object) -> bool:
    start = ROUND_STARTS.get(type(actor))
    return start is not None and ((pending is None and not actor.busy) or type(pending) is start)


def actor_part(actor: Any, pending: object) -> tuple[Any, ...]:
    """An actor's part of the identity: the fields that count now, and its pending request or the
    reply it has in hand (a frozen event that may hold dicts and lists: its fields, canonical)."""
    names = _counted(type(actor), _between_rounds(actor, pending))
    d = actor.__dict__
    if pending is None or isinstance(pending, Request):
        item = None if pending is None else canon(pending)
    else:
        item = (type(pending).__name__, *[canon(getattr(pending, f.name)) for f in fields(pending)])  # type: ignore[arg-type]
    return ((type(actor).__name__, *[canon(d[k]) for k in names]), item)


def copy_reply(reply: Any) -> Any:
    """A reply to feed to an actor: frozen, but its dicts and lists may become the actor's own (the
    enactor keeps ``ChangesLoaded.changes`` and consumes it), and a reply in hand is shared by every
    state that holds it, so each feed gets copies of them."""
    if not is_dataclass(reply):
        return reply
    return type(reply)(**{f.name: copy_value(getattr(reply, f.name)) for f in fields(reply)})  # type: ignore[misc]


def reset_round(actor: Any, pending: object) -> None:
    """Give an actor that just went between rounds the defaults of its ``ROUND`` fields (it is this
    state's own copy). They are overwritten before any read, so this changes no future; it makes the
    identity canonical once the actor starts a round and the fields count again, instead of carrying
    whatever the previous round left."""
    if not _between_rounds(actor, pending):
        return
    t = type(actor)
    defaults = _ROUND_DEFAULTS.get(t)
    if defaults is None:
        defaults = _ROUND_DEFAULTS[t] = tuple(
            (f.name, f.default_factory if f.default_factory is not MISSING else _constant(f.default))
            for f in fields(t) if f.metadata.get(IDENTITY) == "round")
    for name, make in defaults:
        setattr(actor, name, make())


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _key_sort(item: tuple[Any, Any]) -> Any:
    return item[0]


def canon(value: Any) -> Any:
    """A hashable value equal for equal contents: record sets as their digests, containers as tuples
    (dicts sorted by key), mutable dataclasses as their counting fields; frozen values as themselves."""
    t = type(value)
    if t is RecordSet:  # before the frozen-dataclass fast path, which ``copy_value`` may have taught RecordSet
        return value.digest
    if _IMMUTABLE.get(t) and t is not tuple and t is not frozenset:  # atoms and frozen dataclasses
        return value
    if t is dict:
        items = [(k, canon(v)) for k, v in value.items()]
        try:
            items.sort(key=_key_sort)
        except TypeError:
            items.sort(key=repr)
        return tuple(items)
    if t is list or t is tuple:
        return tuple(canon(v) for v in value)
    if t is set or t is frozenset:
        return frozenset(canon(v) for v in value)
    if immutable(t):
        return value
    if is_dataclass(value):
        d = value.__dict__
        return (t.__name__, *[canon(d[k]) for k in _counted(t, False)])
    return value


def monitor_part(mon: Monitor) -> tuple[Any, ...]:
    """The monitor's part: what later checks read (the content history too, so that two states with
    one identity judge every future write alike)."""
    return (tuple(sorted(mon.highest_served.items())), tuple(sorted(mon.exempt_until)),
            tuple(sorted((k, tuple(v)) for k, v in mon.content.items())),
            tuple(sorted(mon.highest_marker.items())), tuple(sorted(mon.published)))


# -- copies ------------------------------------------------------------------------------------------

_IMMUTABLE: dict[type, bool] = {t: True for t in (int, str, float, bool, type(None), bytes, tuple, frozenset)}


def immutable(t: type) -> bool:
    """Atoms, tuples, enum members (an actor's phase, a verdict) and frozen dataclasses are shared, never
    copied."""
    known = _IMMUTABLE.get(t)
    if known is None:
        params = getattr(t, "__dataclass_params__", None)
        known = _IMMUTABLE[t] = bool(params is not None and params.frozen) or issubclass(t, tuple | Enum)
    return known


def _shared(t: type) -> frozenset[str]:
    names = _SHARED.get(t)
    if names is None:
        names = _SHARED[t] = frozenset(_names(t, frozenset({"config"})))
    return names


def copy_value(value: Any) -> Any:
    """A deep copy of the mutable parts only: dicts, lists, sets and non-frozen dataclasses (whose
    ``CONFIG`` fields are shared)."""
    t = type(value)
    if immutable(t):
        return value
    if t is dict:
        return {k: copy_value(v) for k, v in value.items()}
    if t is list:
        return [copy_value(v) for v in value]
    if t is set:
        return set(value)
    if t is deque:
        return deque((copy_value(v) for v in value), value.maxlen)
    if hasattr(value, "__dict__") and is_dataclass(value):
        shared = _shared(t)
        new = object.__new__(t)
        new.__dict__.update({k: v if k in shared else copy_value(v) for k, v in value.__dict__.items()})
        return new
    return copy.deepcopy(value)


# Actors whose fields hold atoms, frozen values, or dicts, lists and sets of them (checked by
# tests/sim/test_explore.py): copying one field deep is a full copy. Others go through ``copy_value``.
FLAT_ACTORS = (Enactor, Verifier, Collector)
_ONE_LEVEL: dict[type, Callable[[Any], Any]] = {dict: dict.copy, list: list.copy, set: set.copy}
# Fields of those actors whose values are mutable (the verifier's ``Quarantine`` counts its rounds down in
# place): copied deep (``copy_value``), or a successor's change would show in its parent. Usually empty.
DEEP_FIELDS = frozenset({"quarantined"})


def copy_actor(actor: Any) -> Any:
    t = type(actor)
    if t not in FLAT_ACTORS:
        return copy_value(actor)
    new = object.__new__(t)
    one = _ONE_LEVEL
    new.__dict__.update({k: (copy_value(v) if k in DEEP_FIELDS else one[type(v)](v) if type(v) in one else v)
                         for k, v in actor.__dict__.items()})
    return new

