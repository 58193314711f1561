"""The fault injector of one simulated run: fires the schedule's faults, and owns their state and quiet phase.

Owns what the faults of a run change and when they stop: the flaky store and provider the run's
interpreter talks to (``flaky``; made only when the schedule has an outage, throttling or a latency
spike, so that a run without them pays nothing per call) and their windows; actors' clock skews and
pauses; the health it forces (flaps, ABA, all unhealthy, amnesia) and the targets' true health under
``health_amnesia``; the ``request_exception`` faults armed in the interpreter (``armed``); the writes
that will time out after they are applied (``timeout_next``, consumed when such a request is
delivered, whatever its reply); the provider's partial-write windows, and the check that a marker
that says more than its records show is reported by the verifier (I8); the hand edits of records and
markers (``corrupt``, ``marker_out_of_range``, ``hand_marker``, ``marker_in_range``, ``relabel_owner``,
``second_owner``, ``rival_owner``: a second
installation that takes an endpoint back again and again, re-scheduling itself) and the rogue plans
(``malformed_plan``); the windows in which the verifier's DNS queries go unanswered (``dns_silent``,
through ``world.Resolver.silent``); and the count of each fault fired (a run's ``faults``).

At ``quiet`` (the end of ``scenario.duration``) every fault stops: windows close, paused actors
resume, forced health ends, armed exceptions and pending timeouts are dropped; later scheduled
faults are ignored.

What it does not own: when faults happen (``faults.make_schedule`` drew that), and the actors
themselves: a crash, a redelivered plan and a planner restart are carried out by the driver
(``Simulation``), which schedules, steps and restarts actors.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from dnsplane.model import (
    EndpointKey,
    Generation,
    Marker,
    Member,
    Observed,
    RecordSet,
    generation_in_range,
    read_marker,
)
from dnsplane.sim.faults import EXCEPTION_NAMES, Fault
from dnsplane.sim.flaky import FlakyProvider, FlakyStore
from dnsplane.sim.invariants import I8, Lineage
from dnsplane.sim.vocabulary import Corruption, FaultKind, InRange, PartialWrite
from dnsplane.sim.world import Resolver
from dnsplane.store.base import INFLIGHT_TTL
from dnsplane.store.memory import MemoryStore

if TYPE_CHECKING:
    from dnsplane.sim.driver import Simulation

INTRUDER = "intruder"  # the owner id of the second installation of the ``second_owner`` fault
RIVAL = "rival"  # the owner id of the installation of the ``rival_owner`` fault, which keeps taking endpoints


class FaultInjector:
    """The faults of one run of ``sim``, fired one by one as the driver reaches them (``fire``)."""

    def __init__(self, sim: Simulation, schedule: list[Fault]) -> None:
        self.sim = sim
        self.schedule = schedule
        kinds = {f.kind for f in schedule}
        clock = sim.clock
        # the wrappers the interpreter calls instead of the memory store and provider, when this run has
        # faults of theirs (None: every call goes straight to the memory store or provider)
        self.store = FlakyStore(sim.store, clock) if FaultKind.STORE_OUTAGE in kinds else None
        self.provider = (FlakyProvider(sim.provider, clock)
                         if FaultKind.THROTTLE in kinds or FaultKind.LATENCY_SPIKE in kinds else None)
        # the provider the interpreter calls: the flaky one only when it can fail a call (latency spikes
        # alone are the scheduler's to apply, through ``self.provider.latency_factor``)
        self.calls_provider = self.provider if FaultKind.THROTTLE in kinds else None
        self.armed: dict[str, tuple[str, str]] = {}  # the interpreter's: actor -> (when, exception name)
        self.fired_counts: dict[str, int] = {}
        self.quiet = False
        self.skew: dict[str, float] = {}  # actor -> its clock's offset (``clock_skew``; 0.0 without)
        self.paused_until: dict[str, float] = {}
        self.timeout_next: set[str] = set()
        self.forced_health: dict[str, tuple[float, str]] = {}  # target -> (until, "down" | "flap")
        self.corrupting = False  # a hand edit is being written: the provider's listener must not count it
        # partial_write: (endpoint, mode) -> when its window ends; endpoint -> since when its marker says more
        # than its records show (a write the provider applied in part), until the verifier reports it
        self.partial_until: dict[tuple[EndpointKey, str], float] = {}
        self.lies: dict[EndpointKey, float] = {}
        self.check_partial = FaultKind.PARTIAL_WRITE in kinds
        # marker_restored: every marker dnsplane wrote at each endpoint, oldest first (the listener below)
        self.written_markers: dict[EndpointKey, list[Marker]] = {}
        if FaultKind.MARKER_RESTORED in kinds:
            sim.provider.add_listener(self._note_markers)
        # health_amnesia: the targets' true health (the workload), and the targets the store kept as down
        # at the planner's last restart that it has not observed up since
        # (and with a health grace: H1's check of the grace needs the world's health across restarts)
        self.truth: dict[str, bool] | None = ({tid: True for tid in sim.targets}
                                              if FaultKind.HEALTH_AMNESIA in sim.scenario.faults
                                              or sim.scenario.health_grace else None)
        self.unconfirmed_down: set[str] = set()
        # store_rollback: the backups taken and not yet put back, by when they were taken
        # (the store, and what each generation named then: ``Monitor.lineage``)
        self.backups: dict[float, tuple[MemoryStore, Lineage]] = {}
        # dns_silent: endpoint (None: every endpoint) -> when the verifier's queries are answered again
        self.silent_until: dict[EndpointKey | None, float] = {}

    def fired(self, kind: str) -> None:
        """Count a fault of ``kind`` (a plain string: the counts are a run's summary) as fired."""
        self.fired_counts[kind] = self.fired_counts.get(kind, 0) + 1

    # ----------------------------------------------------------------- firing

    def fire(self, f: Fault) -> None:
        """Fault ``f`` happens now (nothing, once faults have stopped)."""
        if self.quiet:
            return
        sim = self.sim
        kind = f.kind
        if sim.tracing:
            sim.tracer.note(f.target if f.target in sim.actors else "faults", "fault", f.describe())
        now = sim.now
        match kind:
            case FaultKind.PAUSE:
                self.fired(kind)
                self.paused_until[f.target] = now + INFLIGHT_TTL + f.duration
            case FaultKind.CRASH:
                sim.crash(f.target, f.mode, f.duration)
            case FaultKind.LATENCY_SPIKE:
                self.fired(kind)
                assert self.provider is not None
                self.provider.spikes.open(now, f.duration, f.value or 1.0)
            case FaultKind.THROTTLE:
                self.fired(kind)
                assert self.provider is not None
                self.provider.throttles.open(now, f.duration, f.value or 1.0)
            case FaultKind.STORE_OUTAGE:
                self.fired(kind)
                assert self.store is not None
                self.store.outages.open(now, f.duration, f.value or 1.0)
            case FaultKind.TIMEOUT_AFTER_APPLY:
                self.fired(kind)
                self.timeout_next.add(f.target)
            case FaultKind.REDELIVER:
                sim._redeliver(f)  # the driver's: it feeds the enactor
            case FaultKind.CLOCK_SKEW:
                self.fired(kind)
                self.skew[f.target] = f.value
            case FaultKind.PLANNER_RESTART:
                self.fired(kind)
                sim.restart_planner(counter_reset=f.mode == "counter_reset")
            case FaultKind.HEALTH_FLAP | FaultKind.ABA:
                self.fired(kind)
                mode = "flap" if kind == FaultKind.HEALTH_FLAP else "down"
                until = now + (f.duration if kind == FaultKind.HEALTH_FLAP else sim.scenario.planner_period * 1.5)
                self.forced_health[f.target] = (until, mode)
            case FaultKind.ALL_UNHEALTHY:
                self.fired(kind)
                for t in sim.by_endpoint[f.target].targets:
                    self.forced_health[t.id] = (now + f.duration, "down")
            case FaultKind.MALFORMED_PLAN:
                self._malformed(f)
            case FaultKind.CORRUPT:
                self._corrupt(f)
            case FaultKind.MARKER_OUT_OF_RANGE:
                self._marker_out_of_range(f)
            case FaultKind.HAND_MARKER:
                self._hand_marker(f)
            case FaultKind.SECOND_OWNER:
                self._second_owner(f)
            case FaultKind.MARKER_IN_RANGE:
                self._marker_in_range(f)
            case FaultKind.RELABEL_OWNER:
                self._relabel_owner(f)
            case FaultKind.MARKER_RESTORED:
                self._marker_restored(f)
            case FaultKind.RIVAL_OWNER:
                self._rival_owner(f)
            case FaultKind.PARTIAL_WRITE:
                self._partial_write(f)
            case FaultKind.HEALTH_AMNESIA:
                self._health_amnesia(f)
            case FaultKind.DNS_SILENT:
                self._dns_silent(f)
            case FaultKind.STORE_ROLLBACK:
                self._store_rollback(f)
            case FaultKind.REQUEST_EXCEPTION:
                # the actor's next store or provider command raises ``f.value``-th exception of EXCEPTIONS
                if sim.alive.get(f.target, False):
                    self.fired(kind)
                    self.armed[f.target] = (f.mode, EXCEPTION_NAMES[int(f.value) % len(EXCEPTION_NAMES)])
        if sim.dirty:
            sim.after_step()

    def timed_out(self, name: str) -> bool:
        """Whether ``name``'s write, just delivered, times out after it was applied (once per fault)."""
        if name not in self.timeout_next:
            return False
        self.timeout_next.discard(name)
        self.fired(FaultKind.TIMEOUT_AFTER_APPLY.value)
        return True

    def _malformed(self, f: Fault) -> None:
        sim = self.sim
        ep = sim.by_endpoint[f.target]
        key = ep.key
        t0 = ep.targets[0]
        match f.mode:
            case "empty":
                rs = RecordSet.of(ep.ttl, [Member(t0.id, t0.addresses, 0)])
            case "bad_address":
                rs = RecordSet.of(ep.ttl, [Member(t0.id, ("10.0.0.256",), 100)])
            case "duplicate_target":
                rs = RecordSet(ep.ttl, (Member(t0.id, t0.addresses, 50), Member(t0.id, t0.addresses, 50)))
            case _:
                rs = RecordSet.of(0, [Member(t0.id, t0.addresses, 100)])
        head = sim.store.head()
        gen = sim.store.publish(head, [(key, rs)], sim.now, "rogue")
        if gen is not None:
            self.fired(f.kind)
            sim.on_publish(gen, ((key, rs),), rogue=True)
            sim.wake_enactors()

    def _corrupt(self, f: Fault) -> None:
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        if seen.records is None and seen.marker is None:
            return  # never published yet: nothing to corrupt
        self.fired(f.kind)
        self.corrupting = True
        if f.mode != Corruption.EMPTIED:
            sim.refs.hand_marked.add(key)
        match f.mode:
            case Corruption.EMPTIED:
                # (the bound starts once the verifier's DNS view answers for it again: ``dns_silent``)
                sim.monitor.exempt(key, max(sim.now, self._silent_end(key)) + sim.scenario.repair_bound)
                sim.provider.hand_edit(key, None, seen.marker)
            case Corruption.MARKER_DELETED:
                sim.monitor.hand_edited(key, None)
                sim.provider.hand_edit(key, seen.records, None)
            case Corruption.ENDPOINT_DELETED:
                # records and marker deleted whole: looks never written (the explorer's ENDPOINT_DELETED);
                # emptied, so exempt from I1 as ``emptied`` is, and a marker deleted (I2's baseline restarts)
                sim.monitor.exempt(key, max(sim.now, self._silent_end(key)) + sim.scenario.repair_bound)
                sim.monitor.hand_edited(key, None)
                sim.provider.hand_edit(key, None, None)
            case _:
                # A person editing the marker TXT: ``g=`` set back to an older generation and ``d=``
                # to the records' digest, the rest of the text (``p=``, the chain token of the
                # marker the last write replaced) kept as it was. Reproducing an older ``p=`` as
                # well would take copying an old marker byte for byte, which this fault does not
                # model (docs/simulation.md, "Faults").
                deleted = [p.generation for p in sim.store.plans()]
                old = Generation(max(1, (min(deleted) - 1) if deleted else 1))
                sim.monitor.hand_edited(key, int(old))
                digest = seen.records.digest if seen.records else "0"
                prev = seen.marker.prev if seen.marker else ""
                sim.provider.hand_edit(key, seen.records, Marker(old, digest, prev))
        self.corrupting = False

    def _marker_out_of_range(self, f: Fault) -> None:
        """A person writes the marker TXT with ``g=`` out of range or garbage (``f.mode``: "g=<text>", with
        "/column" when the provider keeps markers as columns and holds the number itself: read, since issue 13's
        eighth round, as the embedded provider reads such a row, a corrupt marker, ``MemoryProvider.hand_edit``).
        The rest of the text is the current marker's (``d=`` the records' digest, ``p=`` and ``o=`` kept). A text marker
        reaches dnsplane as the providers that keep markers as text read it (``read_marker``, RFC 2136 and
        Route 53): a corrupt marker, ``o=`` kept. (Until issue 13's fourth round it was read with
        ``Marker.from_text``, as no marker at all: the simulator never saw the corrupt marker those
        providers read, and so missed that ``read_marker`` dropped ``o=``, an I7 hole found by hand.)"""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        if seen.records is None and seen.marker is None:
            return
        self.fired(f.kind)
        text, column = f.mode.removeprefix("g=").removesuffix("/column"), f.mode.endswith("/column")
        current = seen.marker or Marker(Generation(0), "", "")
        digest = seen.records.digest if seen.records else current.digest
        edited = dataclasses.replace(current, digest=digest).to_text().split()
        edited[1] = f"g={text}"
        typed = " ".join(edited)
        marker = read_marker(typed)
        assert marker is not None  # every ``dnsplane g=...`` text reads as a marker: a corrupt one at worst
        sim.refs.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        written = int(text) if column else marker.generation
        if generation_in_range(written):  # only where a test widens the range
            sim.monitor.hand_edited(key, int(written))  # read as an ordinary hand edit
        # (an out-of-range generation is not one dnsplane wrote: the monitor's I2 baseline stays)
        self.corrupting = True
        if column:  # kept as a number, read as the embedded provider reads its row (``hand_edit``)
            sim.provider.hand_edit(key, seen.records,
                                   dataclasses.replace(current, generation=Generation(int(text)), digest=digest))
        else:
            sim.provider.hand_edit_text(key, seen.records, typed)
        self.corrupting = False

    def _hand_marker(self, f: Fault) -> None:
        """A person writes endpoint ``f.target``'s marker from scratch, on a provider that keeps markers as
        columns (a text ``g=`` out of range never parses): generation ``f.mode`` ("g=<number>", out of
        range), ``d=`` the records' digest, and no ``p=``. A marker without a chain token has no seal to
        break (as one written before chain tokens): until issue 13's eighth round only the enactor's range
        check on ``g=`` told it from one dnsplane wrote; now the provider reads it as the embedded provider
        reads such a row, a corrupt marker (``MemoryProvider.hand_edit``). The records are kept."""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        if seen.records is None and seen.marker is None:
            return
        self.fired(f.kind)
        digest = seen.records.digest if seen.records else (seen.marker.digest if seen.marker else "0")
        marker = Marker(Generation(int(f.mode.removeprefix("g="))), digest, "")
        sim.refs.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        # (out of range: not a generation dnsplane wrote, the monitor's I2 baseline stays)
        self.corrupting = True
        sim.provider.hand_edit(key, seen.records, marker)
        self.corrupting = False

    def _marker_in_range(self, f: Fault) -> None:
        """A person sets endpoint ``f.target``'s marker ``g=`` to a generation whose plan the store keeps
        (``f.mode``, ``InRange``): "head", the store's head; "kept", a kept plan's (``f.value`` picks it:
        a fraction of their number, oldest first); both keep the rest of the text, ``p=`` too, so the
        seal breaks when ``g=`` changed. "scratch": the marker written from scratch on a provider that
        keeps markers as columns: a kept plan's ``g=``, ``d=`` the records' digest, ``o=`` kept, no ``p=``
        (no seal to break, as a marker written before chain tokens): only its digest, against the
        content of the plan it names, tells it from one dnsplane wrote (an enactor at that generation
        skips it as corrupt; one behind it needs the store to confirm the digest). Only this
        installation's markers over records are edited; the records are kept."""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        kept = sorted(int(p.generation) for p in sim.store.plans())
        found, records = seen.marker, seen.records
        if found is None or records is None or found.owner != sim.ownership.owner or not kept:
            return
        if f.mode == InRange.HEAD:
            g = Generation(int(sim.store.head()))
        else:
            g = Generation(kept[min(int(f.value * len(kept)), len(kept) - 1)])
        if f.mode == InRange.SCRATCH:
            marker = Marker(g, records.digest, "", found.owner)
        else:
            marker = dataclasses.replace(found, generation=g)
        if marker == found:
            return  # nothing changes
        self.fired(f.kind)
        if marker.sealed() or not generation_in_range(found.generation) or g < found.generation:
            # a marker that passes for dnsplane's, or one set back: the monotonic baseline restarts from
            # it (raised with its seal broken it names no plan: the monitor's I2 ignores it, the
            # baseline stays)
            sim.monitor.hand_edited(key, int(g))
        sim.refs.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        self.corrupting = True
        sim.provider.hand_edit(key, records, marker)
        self.corrupting = False

    def _note_markers(self, keys: list[EndpointKey]) -> None:
        if self.corrupting:
            return  # a person's edit: not a marker dnsplane wrote
        for key, seen in self.sim.provider.read(keys).items():
            if seen.marker is not None:
                self.written_markers.setdefault(key, []).append(seen.marker)

    def _marker_restored(self, f: Fault) -> None:
        """A person puts back, byte for byte (``p=`` included, so its seal holds), an older marker dnsplane
        wrote at endpoint ``f.target`` (``f.value`` picks it: a fraction of their number, oldest first), from
        a backup or an old zone file, and leaves the records as they are. Only the compare-and-swap's records
        tell such a marker from the one a delayed writer read: the marker alone matches again."""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        found, records = seen.marker, seen.records
        older = [m for m in self.written_markers.get(key, ()) if found is not None and m.generation < found.generation
                 and m.owner == found.owner]
        if found is None or records is None or not older:
            return
        marker = older[min(int(f.value * len(older)), len(older) - 1)]
        self.fired(f.kind)
        sim.monitor.hand_edited(key, int(marker.generation))  # a marker that passes for dnsplane's: baseline restarts
        sim.refs.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        self.corrupting = True
        sim.provider.hand_edit(key, records, marker)
        self.corrupting = False

    def _relabel_owner(self, f: Fault) -> None:
        """A person edits the ``o=`` of another installation's marker on endpoint ``f.target`` to this
        installation's id (a person deciding the endpoint is ours after all), the rest of the text
        kept (``p=`` too: the seal covers the owner id, so it breaks). The other store's ``g=``
        (``second_owner``'s numbering, up to 1000) names no plan of this store: only the broken seal
        keeps it from being taken for a newer writer's and made the head. Nothing happens on an
        endpoint without another owner's marker. (This installation's marker relabelled as another's
        is ``second_owner`` without its records: taken back, or CONTESTED, the same way.)"""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        found, ours = seen.marker, sim.ownership.owner
        if found is None or not found.owner or found.owner == ours:
            return
        self.fired(f.kind)
        sim.refs.hand_marked.add(key)  # no reference (I3) until dnsplane rewrites it
        self.corrupting = True
        sim.provider.hand_edit(key, seen.records, dataclasses.replace(found, owner=ours))
        self.corrupting = False

    def _second_owner(self, f: Fault) -> None:
        """Another installation (owner id ``INTRUDER``, its own store and numbering: ``f.value``) writes
        endpoint ``f.target`` with its own content and marker, as a second ``dnsplane up`` on the zone
        would. An adopted endpoint is taken back by the verifier; one that is not stays theirs (I7)."""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        seen = sim.provider.read([key])[key]
        self.fired(f.kind)
        records = RecordSet.of(60, [Member("other-lb", ("198.51.100.7",), 1000)])
        theirs = seen.marker if seen.marker is not None and seen.marker.owner == INTRUDER else None
        marker = Marker.after(theirs, Generation(int(f.value)), records.digest, INTRUDER)
        sim.refs.hand_marked.add(key)  # another store's generation: no reference (I3) until dnsplane rewrites it
        sim.monitor.hand_edited(key, None)
        self.corrupting = True
        sim.provider.hand_edit(key, records, marker)
        self.corrupting = False

    def _store_rollback(self, f: Fault) -> None:
        """A backup of the store is taken now (mode "live" or "restart"); ``f.duration`` later an operator
        puts it back (mode "restore-live" or "restore-restart"): every plan published since is lost while
        the zone keeps what they wrote, and the backup's head hands their generations out again. "live":
        under the running fleet (an etcd cluster restored from a snapshot, its clients reconnecting);
        "restart": dnsplane is stopped for the restore and every process starts again with empty state."""
        sim = self.sim
        if not f.mode.startswith("restore-"):
            self.backups[f.at] = (sim.store.fork(), sim.monitor.lineage())
            sim.at_fault(sim.now + f.duration, dataclasses.replace(f, mode="restore-" + f.mode))
            return
        backup = self.backups.pop(f.at, None)
        if backup is None:
            return
        self.fired(f.kind)
        sim.store_restored(*backup, taken_at=f.at, restart=f.mode == "restore-restart")

    def _dns_silent(self, f: Fault) -> None:
        """For ``f.duration`` the verifier's DNS queries of endpoint ``f.target`` ("all": of every endpoint)
        get no answer: its ``Resolve`` reports them ``TIMEOUT``, as the runtime's resolver does, while the
        provider is read as usual (a DNS server down or firewalled, the provider's API still up)."""
        sim = self.sim
        self.fired(f.kind)
        key = None if f.target == "all" else sim.by_endpoint[f.target].key
        until = sim.now + f.duration
        # I1's repair bound for an endpoint a person emptied counts only time in which the verifier can see
        # it: the bound of each such endpoint silenced is put back by the silence this window adds
        exempt = sim.monitor.exempt_until
        for k in [k for k in exempt if key is None or k == key]:
            exempt[k] += max(0.0, until - max(sim.now, self._silent_end(k)))
        self.silent_until[key] = max(self.silent_until.get(key, 0.0), until)
        resolver = sim.executor.resolver
        assert isinstance(resolver, Resolver)
        resolver.silent = self._silent

    def _silent_end(self, key: EndpointKey) -> float:
        """When the verifier's DNS queries of ``key`` are answered again (in the past: they are now)."""
        until = self.silent_until
        return max(until.get(None, 0.0), until.get(key, 0.0))

    def _silent(self, key: EndpointKey) -> bool:
        """Whether the verifier's DNS query of ``key`` gets no answer now (``world.Resolver.silent``)."""
        now, until = self.sim.now, self.silent_until
        return until.get(None, 0.0) > now or until.get(key, 0.0) > now

    def _rival_owner(self, f: Fault) -> None:
        """A second installation whose fleet adopts endpoint ``f.target`` too (owner id ``RIVAL``), as two
        ``dnsplane up`` with one fleet file on one zone (issue 8): from ``f.at``, for ``f.duration``, every
        ``f.value`` seconds it takes the endpoint back unless its own marker is there. It plans what this
        one does: the records the endpoint holds, under a marker of its own numbering, which like this
        store's started at 1, so it names the generation this installation's marker named (the content
        this store has there: only the owner id tells the marker from this installation's own)."""
        sim = self.sim
        key = sim.by_endpoint[f.target].key
        if sim.now + f.value < f.at + f.duration:
            sim.at_fault(sim.now + f.value, f)  # its next take (none once faults stop: ``fire``)
        seen = sim.provider.read([key])[key]
        if seen.marker is not None and seen.marker.owner == RIVAL:
            return
        records = seen.records
        if records is None:  # nothing there: what it plans, this store's newest content
            newest = sim.store.desired([key], sim.store.head()).get(key)
            if newest is None:
                return
            records = newest.records
        self.fired(f.kind)
        found = seen.marker.generation if seen.marker is not None else 1
        marker = Marker.after(seen.marker, Generation(found if generation_in_range(found) else 1), records.digest,
                              RIVAL)
        sim.refs.hand_marked.add(key)  # another store's generation: no reference (I3) until dnsplane rewrites it
        sim.monitor.hand_edited(key, None)
        self.corrupting = True
        sim.provider.hand_edit(key, records, marker)
        self.corrupting = False

    def _health_amnesia(self, f: Fault) -> None:
        """A target goes down (mode "down", for ``f.duration``); once the planner has acted on it, the
        planner process restarts (mode "restart"): its in-memory health is gone, the store's is not."""
        sim = self.sim
        if f.mode == "down":
            self.fired(f.kind)
            self.forced_health[f.target] = (sim.now + f.duration, "down")
            # after the planner acted on it (two checks and a period), between two health checks (so the
            # new planner plans before it has observed anything)
            delay = min(f.duration / 2, 2.5 * sim.scenario.health_period + sim.scenario.planner_period)
            sim.at_fault(sim.now + delay, dataclasses.replace(f, mode="restart"))
        elif sim.alive["planner"]:
            sim.restart_planner(counter_reset=False)

    def planner_restarted(self) -> None:
        """A new planner, its health in memory gone: the targets the store kept as down must not be served
        again until it has observed them up (``Monitor.check_restart_health``)."""
        sim = self.sim
        if self.truth is not None:
            self.unconfirmed_down = {tid for tid, kept in sim.store.health().items() if kept.healthy is False}
            if sim.tracing and self.unconfirmed_down:
                sim.tracer.note("planner", "restart", f"store keeps {len(self.unconfirmed_down)} targets down: "
                                                      f"{', '.join(sorted(self.unconfirmed_down))}")

    # ----------------------------------------------------------------- partial writes, and their check

    def _partial_write(self, f: Fault) -> None:
        """For ``f.duration`` the provider rejects ``f.target``'s writes ("rejected": ``Rejected``, nothing
        written, the rest of the batch written) or applies only their marker ("marker_only")."""
        sim = self.sim
        self.fired(f.kind)
        key = sim.by_endpoint[f.target].key
        until = self.partial_until[(key, f.mode)] = max(self.partial_until.get((key, f.mode), 0.0),
                                                        sim.now + f.duration)
        if f.mode == PartialWrite.REJECTED:
            sim.provider.reject(key, "simulated: the server refuses this endpoint (a CNAME at the name)")
        else:
            sim.provider.marker_only.add(key)
        sim.at_window_end(until, (key, f.mode))

    def end_partial(self, what: tuple[EndpointKey, str]) -> None:
        """A partial-write window ends (unless a later one on the same endpoint is still open)."""
        sim = self.sim
        key, mode = what
        if self.partial_until.get(what, 0.0) > sim.now:
            return  # a later window on the same endpoint is still open
        self.partial_until.pop(what, None)
        if mode == PartialWrite.REJECTED:
            sim.provider.reject(key, None)
        else:
            sim.provider.marker_only.discard(key)
        if sim.tracing:
            sim.tracer.note("faults", "fault", f"partial_write {key.name} {mode} ends")

    def note_lies(self, observed: dict[EndpointKey, Observed]) -> None:
        """A marker that says more than its endpoint's records show (only a write applied in part makes
        one: dnsplane writes both together, and a person's edits in these scenarios keep them matching)
        must be reported by the verifier within ``repair_bound``."""
        now = self.sim.now
        for key, seen in observed.items():
            records, marker = seen.records, seen.marker
            if records is not None and marker is not None and marker.digest != records.digest:
                self.lies.setdefault(key, now)
            else:
                self.lies.pop(key, None)

    def check_lies(self) -> None:
        sim = self.sim
        verifier = sim.actors.get("verifier")
        for key, since in list(self.lies.items()):
            if verifier is not None and verifier.last_problems.get(key, "lagging") != "lagging":
                # reported as what it is (not "lagging": that believes the marker): not all right, no
                # last-known-good, repaired when it can be
                del self.lies[key]
            elif sim.now - since > sim.scenario.repair_bound:
                del self.lies[key]
                sim.monitor.fail(I8, key, f"its marker has said more than its records show since "
                                          f"t={since:.1f}s and the verifier has not reported it")

    # ----------------------------------------------------------------- quiet

    def start_quiet(self) -> None:
        """Faults stop: windows close, paused processes resume, forced health ends."""
        sim = self.sim
        now = sim.now
        self.quiet = True
        self.timeout_next.clear()
        self.armed.clear()
        self.silent_until.clear()
        for key, mode in list(self.partial_until):
            self.partial_until[(key, mode)] = now
            self.end_partial((key, mode))
        if self.provider is not None:
            self.provider.throttles.close(now)
            self.provider.spikes.close(now)
        if self.store is not None:
            self.store.outages.close(now)
        for name, until in list(self.paused_until.items()):
            if until > now:
                self.paused_until[name] = now
        self.forced_health.clear()
        if sim.tracing:
            sim.tracer.note("faults", "fault", "faults stop; convergence bound starts")
