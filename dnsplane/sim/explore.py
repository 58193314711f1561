"""The explorer: every interleaving of a small configuration, breadth first, with state hashing.

Where the simulator samples delivery orders with a seeded scheduler, the
explorer enumerates them all. A state is the actors' state, the store's, the
provider's, each actor's pending item (its outstanding request, or the reply to
it in hand), how far the scripted health changes went and how many faults were
used. From a state the transitions are:

- run any actor's pending request against the store or provider ("enactor-1's
  ReadHead runs"): its reply becomes the actor's item in hand;
- feed any actor the reply in hand ("enactor-1 receives HeadRead(head=3)"): the
  actor handles it and the effects it answers with are carried out at once (a
  ``Begin``, a ``Finish``, a ``SetLastKnownGood``...), its next request, if any,
  becomes its pending item. Reply latency: as in the runtime (``App.feed``: the
  request runs in a worker thread, its reply is handled in another thread call,
  the next effects run in a later one), any other move can fall between a
  read and what is decided from it, so every read can go stale before it is
  acted on (a head read before a collect, a DNS check before the enactors move);
- tick any idle actor;
- the next scripted health change (it makes the planner publish a new
  generation, up to ``generations``; the script includes content returning to
  an earlier value, A → B → A);
- when ``faults`` > 0, a fault: an actor crashes (losing its pending request, or
  after it ran — e.g. a write the provider acknowledged —, or the reply it had in
  hand) and restarts empty; an
  actor's pending request raises an exception that is not a ``DnsplaneError``
  (a ``RuntimeError``; before it ran, or after it took effect), which the
  interpreter (``Interpreter.run``) turns into a ``Failed`` reply the actor handles; or
  a human empties an endpoint's records, deletes its marker, or writes its
  marker's ``g=`` out of range (``2**63 - 1``, as a provider that keeps markers as
  columns holds it; as TXT text the providers read it with ``read_marker`` as a
  corrupt marker without ``p=``, which only the simulator's ``marker_out_of_range``
  makes); or the provider starts to reject every write of an endpoint
  (``Rejected``: a CNAME at the name, a record set too big for a message), for good;
- with ``fence_window`` (``--fence-window``, issue 13's fifth round), a ``WriteBatch`` whose writes the
  store's fence checks runs in three moves: the two reads of its writer's half (``execute.fence_read``: the
  provider's write token and the store's fence, separate calls in the runtime, each a move in the order
  the code makes them: "enactor-1's WriteBatch reads the write token", then "... reads the store's fence,
  and is sent"; since issue 13's eighth round, before one move), which leave a ``world.SentBatch`` pending,
  then its provider call ("... reaches the provider"); publishes, other writes and hand edits fall between.
  The order is the code's: ``World.send`` notes which read ``fence_read`` makes first, and
  ``World.read_second`` runs it again for the other (it only reads).
  Of the token a ``SentBatch`` keeps only whether one was read and whether it ``moved``: every move whose
  automated write moved the provider's token sets ``moved`` on every other actor's pending ``SentBatch``
  (``World._token_moved``, ``MemoSpace._token_moved`` on the parts), and a moved one reaches the provider
  with a token it never has. So the token's counter is no part of a state, and two states that differ only
  in it (every pending batch's token equal to the provider's or not, alike) act alike. The move changes
  other actors' parts, the one exception to "a move changes its mover and the shared parts": the memo
  keeps, per move, whether it moved the token, a function of what the move read (the provider's part
  and the request), and applies it to the others in ``step``. The fault moves then include deleting an
  endpoint whole (records and marker), the deletion the window's race needs. About 9 times the states
  (``--generations 3``: 4,286,296, 128 s, instead of 471,232; 1,194,494 while the writer's two reads were one
  move), so the default configuration runs without it; CI runs
  ``--generations 3`` and one enactor, one endpoint, one fault with it, where taking the token out is
  found (I2, the race of hand-edits 5357: tests/sim/test_explore.py).

Every new state is checked for I1, I2, I5 (on the provider) and, after a step
that deleted plans, I3 (references computed from actor state); after every move
of an actor, I8: an actor left busy with no request outstanding never runs
again (an exception that escaped the executor, or a ``Failed`` it ignored). Breadth first,
so the first violation found comes with a shortest path to it.

Time does not pass in the explorer (leases never expire): it explores orders,
not durations. Liveness (I4, I6) is the simulator's job.

Where things live. ``dnsplane.sim.statespace``: the ``World`` (one state as objects), its typed
moves, its fingerprint and fork. ``dnsplane.sim.identity``: which actor fields count toward a state
(declared on the actors as field metadata, ``dnsplane.protocol.identity``) and cheap copies.
``dnsplane.sim.memo``: the state space compiled to tuples of part numbers, each move memoised.
``dnsplane.sim.search``: a breadth-first search that knows none of these (its ``Space`` protocol).
This module: the configuration, the report, and what the reductions are and why they are sound.

Cost. A state is kept as its identity (``World.fingerprint``: a short tuple of part numbers) and
each move is computed once per distinct value of what it reads (the mover, and the parts its
request and effects read: the store's head for ``ReadHead``, the provider for ``ReadMarkers``,
...), on a ``World`` built from each part's representative; every later occurrence is a
dictionary lookup. The default configuration's 32 million transitions (8.5 million states; 6
million and 1.7 million before reply latency) need a small fraction of that in runs of the production
code (``--generations 3``: 6,841 runs for 1.9 million transitions). ``dnsplane.sim.memo``'s
docstring says why reusing a move's result across states is exact, and tests/sim/test_explore.py
checks it: from every state of small configurations, each memoised move gives what running the
code again gives, and the counts equal those of a search over ``World`` objects along real paths.

A ``World`` is copied only where a move writes (copy on write): records,
markers, plans, endpoints and messages are frozen and shared; an actor is copied
when a move feeds it, the store, the provider and the monitor when a move writes
them. The invariants are checked again after a move that wrote the provider or
deleted plans: with the provider unchanged every check that passed before still
passes (a new plan only adds history above every marker), and every violation
appears at such a move.

Reductions, and why each keeps every violation that exists
----------------------------------------------------------

A violation is a property of the provider's records and markers (I1, I2, I5),
of the store's rows at referenced generations (I3), and of the monitor's
history. Each reduction below only merges states, or skips orders, that agree
on all of these and on every future the full search would explore from them.

1. *State identity leaves out what cannot influence the future.* Counters and
   statistics (``stats``, ``deleted``, ``total``), logs, the journal (not even
   written: ``journal=False``), timestamps (always 0), plan metadata, and the
   verifier's diagnostics (``last_problems``, ``expected_before``) are written
   but never read by a decision. Two states that differ only there have the
   same successors and the same checks. The actors mark these fields
   themselves (``field(metadata=NOTE)``; their configuration ``CONFIG``, see
   ``dnsplane.protocol.identity``); ``dnsplane.sim.identity`` reads the marks.
2. *Dead fields.* While an actor is idle or waiting on the request that starts
   its round (enactor: ``ReadHead``; legacy enactor and verifier:
   ``LoadDesired``; collector: ``ReadWatermark``) the fields that the previous
   round left (marked ``ROUND`` on the actor: e.g. the enactor's ``sent``, the
   verifier's ``desired`` snapshot and ``head``, the collector's ``asked``; the
   round-starting requests are ``identity.ROUND_STARTS``) are overwritten by every
   path before any read, so they are left out of the fingerprint (classic
   dead-variable reduction: the merged states are bisimilar), and set back to
   their defaults when the actor enters that phase (``reset_round``), so that
   what the previous round left does not tell states apart later either.
3. *Symmetry of the enactors.* They run the same code with the same
   configuration; their names appear only as keys of their own store rows
   (in flight, applied), and the store uses those rows symmetrically (min/max
   for the watermark). Each enactor contributes (state, pending request, its
   store rows) and the contributions are sorted, so swapped states are one
   state. A path is recorded from the state actually reached, so paths stay
   real.
4. *Partial-order reduction of local moves* (4 to 6 only once no fault is left to
   inject: a crash of the ticked actor would not commute with its tick). A tick
   of an idle enactor, collector or verifier changes only that actor (it
   becomes busy with one pending request; no effect, no store or provider
   access), no other move reads or changes that actor's state, nothing can
   disable it, and no invariant looks at it (I3's references are an
   enactor's ``working`` generation, which a tick does not set). So it commutes
   with every move of the others, and exploring only it from such a state loses
   no reachable combination of the others' states (a persistent set of one).
   The same holds for the next health change while the planner is idle, in
   sync and has nothing left to publish (then its own tick is a no-op; the
   health change touches only the planner's health table; the planner's later
   tick, which publishes, is still interleaved freely). Every tick turns an idle
   actor busy and every health change advances the script, so no cycle is made
   of forced moves only (the cycle proviso holds). Forced moves are applied to
   closure (``settle``): the search keeps only settled states; invariants are
   still checked after each single move that could change their verdict.
5. *Stable reads.* An enactor's ``LoadChanges(after, upto)`` is forced once
   its in-flight row (written by the ``Begin`` that came with the request) is
   at or above ``upto`` and ``upto`` is at or below the head. Then no other move
   changes its reply: plans are only added above the head, and the collector
   deletes only rows older than each endpoint's newest row at or below the
   watermark, which that in-flight row (removed only by this enactor) holds at
   or below ``upto``; the newest row at or below ``upto`` of every endpoint that
   changed in the range is kept, so the reply is the same. Running it changes
   only the enactor's item in hand (the reply; fed in the same move only when
   that is local, reduction 8, else by a move of its own, not forced), so the
   move is invisible to every check, commutes with every move of
   the others, and nothing disables it: a persistent set of one, like a tick.
   The store's collect is conditional on the watermark, so a collector that
   read a higher watermark before the ``Begin`` is refused.

6. *Reads of a final head.* Once the planner has seen the whole health script
   and is idle, in sync, with nothing to publish, the head never moves again
   (only the planner publishes; the verifier's ``AdvanceHead`` names a marker,
   and every marker was written from a head already read, so it is a no-op;
   a marker a human garbled to ``g=2**63-1`` is out of range, which the verifier
   never takes for a head, and one a human set back lies below it, unsealed;
   were it taken, the check after that ``AdvanceHead``
   itself reports it, before any reduced move).
   Then the verifier's ``LoadDesired`` is a stable read: the head, and each
   endpoint's newest row at or below it, which the collector keeps (its
   watermark is at most the newest applied generation, so at most the head);
   the reply changes only the verifier. So is an enactor's ``ReadHead`` when
   the head is past what it applied (so the reply starts a round; a reply that
   leaves it idle would make a cycle of forced moves): its ``Begin`` at the
   head cannot lower the watermark, now or later (every part of the minimum
   is at most the head), so the collector sees the same; its ``working``
   becomes the head, whose content every endpoint keeps (its newest row).
   With reply latency these are two forced moves: the ``ReadHead`` runs (it
   changes only the enactor's item in hand), then the enactor is fed the
   ``HeadRead`` when it names the final head (the argument above; the store
   never refuses a ``Begin`` at the head: the collector deletes only plans
   below the watermark, which is at most the head). A ``HeadRead`` in hand
   older than the final head is not forced: its ``Begin`` may lower the
   watermark, which is the race reply latency is there to explore.

7. *Self-loops* are left out: a move that, with the forced tick after it,
   leads back to the same state (``_returns_here``) adds no state.

8. *Local replies are fed at once.* When a request has run, its reply is fed
   in the same move if handling it is local to the actor: the step it answers
   with has no effect that writes the store or the provider (only a request,
   or only ``Log``/``Journal``: the journal is no part of a state), and it
   leaves the actor's I3 reference as it was (``in_flight``: an enactor's
   ``working``, counted unless it holds a ``Failed``). That feed changes only
   the actor's own state and item: no other move reads either (the others'
   moves read the store, the provider, the monitor and their own state; the
   only reads of another actor are I3's references, unchanged by definition,
   and the fingerprint's symmetry, which reads no behaviour); no check looks at
   them (I8's wedged check is about the mover itself, and reports at the merged
   move what it reports at the feed); no move of another disables it. So it
   commutes with every move of the others and the state with the reply in
   hand differs from the one after the feed only where nothing looks: a
   persistent set of one that is taken at once, so the intermediate state is
   never kept. Faults too (so it holds while faults remain): the faults that
   strike an actor with a reply in hand are a crash, which leaves a fresh
   actor and the world as it was, exactly what a crash right after the local
   feed leaves (the planner is never crashed without a request, in either
   state). Only replies whose handling runs a state-writing effect (the
   enactor's ``Begin`` after ``ReadHead`` and its ``Finish`` at a round's end,
   the verifier's ``SetLastKnownGood`` and ``AdvanceHead``, the legacy
   ``Finish``), or that change ``working``, keep the state in between. The
   decision is made by running the actor's code on a copy (``World._reply``).

Checked by tests/sim/test_explore.py: on small configurations the reduced and
the full search reach the same provider/store states and the same violations.
``Config(reduce=False)`` turns 4 to 7 off (1–3 are exact);
``Config(merge_local=False)`` turns 8 off (every reply is held).

Because forced ticks may come earlier than needed, a path in the reduced graph
can be longer than the shortest one: when the reduced search finds the
violation it looks for, the search is run again over every order to report the
truly shortest path (legacy default: 21 steps; 18 before reply latency).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from dnsplane.sim.allocation import collecting_rarely
from dnsplane.sim.invariants import Violation
from dnsplane.sim.memo import MemoSpace
from dnsplane.sim.search import Progress, search
from dnsplane.sim.statespace import Config, World, health_script


@dataclass
class Report:
    config: Config
    states: int
    transitions: int
    elapsed: float
    complete: bool
    violation: Violation | None
    path: list[str]

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.config.protocol, "states": self.states, "transitions": self.transitions,
            "elapsed_s": round(self.elapsed, 3), "complete": self.complete,
            "violation": self.violation.to_json() if self.violation else None, "path": self.path,
        }


def explore(config: Config, max_states: int = 20_000_000, look_for: str = "I1",
            max_seconds: float | None = None, progress: Progress | None = None) -> Report:
    """Breadth-first search; stops at the first violation of ``look_for`` ("any": of any invariant), with a
    shortest path to it, or when every state was seen. Other violations found on the way are reported if
    ``look_for`` is never violated. ``progress`` is called every 20,000 states.

    Each state keeps only its parent and the move that reached it; a path's text is made by
    replaying its moves from the start (the search is deterministic)."""
    started = time.perf_counter()
    with collecting_rarely():  # millions of states kept: the default pace walks them again and again
        result = search(MemoSpace(config), max_states, look_for, max_seconds, progress)
    found = result.found
    if found is not None and config.reduce:  # the reduced graph's path may carry early ticks: search every order
        full = explore(replace(config, reduce=False), max_states, look_for)
        if full.violation is not None and full.violation.short == found.finding.short:
            return Report(config, result.states + full.states, result.transitions + full.transitions,
                          time.perf_counter() - started, False, full.violation, full.path)
    elapsed = time.perf_counter() - started
    if found is not None:
        return Report(config, result.states, result.transitions, elapsed, False, found.finding, found.path)
    other = result.other
    return Report(config, result.states, result.transitions, elapsed, result.complete,
                  None if other is None else other.finding, [] if other is None else other.path)


__all__ = ["Config", "Report", "World", "explore", "health_script"]
