"""Breadth-first search of any state space, stopping at the first finding looked for, with its shortest path.

Knows nothing of dnsplane: a ``Space`` gives the start state, the moves out of a state, a move's
successor with what checks found on the way, and a path's text. States must be hashable (each is
kept once, with the state and move that first reached it: memory is one dictionary entry per state);
a move is whatever the space makes of it. The explorer's space is ``dnsplane.sim.memo.MemoSpace``,
which memoises each move; this module only orders the visits.

Guarantees: every state reachable from the start by the space's moves is visited once (``complete``)
unless the search stops first (a finding looked for, ``max_states``, ``max_seconds``); breadth first, so
a finding's path is a shortest one among the moves the space offers; deterministic for a deterministic
space (the same counts and paths on every run).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

S = TypeVar("S", bound=Hashable)  # a state
M = TypeVar("M")  # a move


class Finding(Protocol):
    """What a check found: ``short`` names it (an invariant: "I1"), for ``look_for``."""

    @property
    def short(self) -> str: ...


F = TypeVar("F", bound=Finding)
F_co = TypeVar("F_co", bound=Finding, covariant=True)


class Space(Protocol[S, M, F_co]):
    def start(self) -> S: ...

    def moves(self, state: S) -> Iterable[M]:
        """The moves to explore out of ``state`` (a space may leave out moves it proves redundant)."""
        ...

    def successor(self, state: S, move: M) -> tuple[S, tuple[F_co, ...]]:
        """The state ``move`` leads to, and what the checks found on the way."""
        ...

    def describe(self, path: list[tuple[S, M]]) -> list[str]:
        """The text of a path, given as (state, move taken from it) from the start."""
        ...


@dataclass(frozen=True, slots=True)
class Counterexample(Generic[F]):
    finding: F
    path: list[str]  # the moves from the start, as the space describes them


@dataclass(frozen=True, slots=True)
class SearchResult(Generic[F]):
    states: int
    transitions: int
    complete: bool  # every reachable state was visited (no stop)
    found: Counterexample[F] | None  # the first finding of the kind looked for
    other: Counterexample[F] | None  # else the first finding of another kind, if any


Progress = Callable[[int, int, int, float], None]  # (states, transitions, depth, seconds)


def search(space: Space[S, M, F], max_states: int, look_for: str, max_seconds: float | None = None,
           progress: Progress | None = None) -> SearchResult[F]:
    """Breadth first from ``space.start()``; stops at the first finding whose ``short`` is ``look_for``
    ("any": any finding), or when every state was seen, or at ``max_states`` / ``max_seconds``. A finding
    counts at the first state reached with it (a state seen before is not looked at again).
    ``progress`` is called every 20,000 states."""
    started = time.perf_counter()
    s0 = space.start()
    seen: dict[S, tuple[S | None, M | None]] = {s0: (None, None)}
    queue: deque[tuple[S, int]] = deque([(s0, 0)])
    transitions = 0
    other: tuple[F, S] | None = None
    moves, successor = space.moves, space.successor
    while queue:
        s, depth = queue.popleft()
        for move in moves(s):
            nxt, found = successor(s, move)
            transitions += 1
            if nxt in seen:
                continue
            seen[nxt] = (s, move)
            if found:
                v = found[0]
                if look_for in ("any", v.short):
                    return SearchResult(len(seen), transitions, False, Counterexample(v, _path(space, seen, nxt)),
                                        None)
                if other is None:
                    other = (v, nxt)
            n = len(seen)
            stop = n >= max_states
            if not n % 20_000:
                elapsed = time.perf_counter() - started
                if progress is not None:
                    progress(n, transitions, depth + 1, elapsed)
                stop = stop or (max_seconds is not None and elapsed > max_seconds)
            if stop:
                return SearchResult(len(seen), transitions, False, None, _other(space, seen, other))
            queue.append((nxt, depth + 1))
    return SearchResult(len(seen), transitions, True, None, _other(space, seen, other))


def _other(space: Space[S, M, F], seen: dict[S, tuple[S | None, M | None]],
           other: tuple[F, S] | None) -> Counterexample[F] | None:
    return None if other is None else Counterexample(other[0], _path(space, seen, other[1]))


def _path(space: Space[S, M, F], seen: dict[S, tuple[S | None, M | None]], s: S) -> list[str]:
    steps: list[tuple[S, M]] = []
    cur: S | None = s
    while cur is not None:
        parent, move = seen[cur]
        if parent is not None and move is not None:
            steps.append((parent, move))
        cur = parent
    return space.describe(list(reversed(steps)))


__all__ = ["Counterexample", "Finding", "Progress", "SearchResult", "Space", "search"]
