"""The actor contract (issue 9): what each command class declares is what the interpreter does, the
interpreter turns a failure of any command into ``Failed`` (I8), and every driver goes through it.

- Every command class's ``READS``/``WRITES`` cover what carrying it out touches: each is run on a
  store and a provider that record which of their methods are called, and each method names the
  resource it reads or writes. A declaration that left one out would let the explorer memoise a
  move on too few parts of a state (and miss states), so an omission fails here.
- Every request names its reply (``Request[HeadRead]``) and is answered with it.
- For any step and any command in it raising any exception (hypothesis), ``Interpreter.run``
  returns ``Failed`` and carries out nothing after the command that raised.
- The runtime, the simulator, the explorer and the protocol harness carry out every step through
  ``Interpreter.run``: that one property holds for all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsplane.execute import Interpreter
from dnsplane.model import EndpointKey, Generation, HealthRecord, Marker, Member, Observed, RecordSet, Write
from dnsplane.protocol.messages import (
    EFFECT_CLASSES,
    REQUEST_CLASSES,
    AdvanceHead,
    Begin,
    Collect,
    Command,
    Effect,
    Failed,
    Finish,
    Journal,
    LoadChanges,
    LoadContentAt,
    LoadDesired,
    Log,
    Publish,
    ReadHead,
    ReadHeadPlan,
    ReadMarkers,
    ReadWatermark,
    Request,
    Resolution,
    Resolve,
    Resource,
    SetLastKnownGood,
    Step,
    Tick,
    WriteBatch,
)
from dnsplane.providers.memory import MemoryProvider
from dnsplane.store.memory import MemoryStore

ZONE = "demo.test."
KEY = EndpointKey(f"api.{ZONE}", "A")
RS = RecordSet.of(30, [Member("lb-1", ("192.0.2.1",), 100)])
H, P, R, L, J = Resource.HEAD, Resource.PLANS, Resource.ROWS, Resource.LAST_KNOWN_GOOD, Resource.JOURNAL

# What each store and provider method touches: (resources read, resources written).
STORE_METHODS: dict[str, tuple[set[Resource], set[Resource]]] = {
    "head": ({H}, set()),
    "publish": ({H, P}, {H, P}),
    "advance_head": ({H}, {H}),
    "desired": ({P}, set()),
    "content_at": ({P}, set()),
    "changed_between": ({P}, set()),
    "health": ({P}, set()),
    "save_health": (set(), {P}),
    "begin": (set(), {R}),
    "finish": ({H}, {R}),
    "set_last_known_good": ({P}, {L}),
    "low_watermark": ({H, R, L}, set()),
    "collect": ({H, R, L}, {P}),
    "record": (set(), {J}),
    "created_at": ({P}, set()),
    "oldest_plan": ({P}, set()),
}
PROVIDER_METHODS: dict[str, tuple[set[Resource], set[Resource]]] = {
    "read": ({Resource.PROVIDER}, set()),
    "read_for_write": ({Resource.PROVIDER}, set()),
    "apply": ({Resource.PROVIDER}, {Resource.PROVIDER}),
}


class Recording:
    """Wraps a store or provider; notes the resources its calls read and write."""

    def __init__(self, inner: Any, methods: dict[str, tuple[set[Resource], set[Resource]]],
                 reads: set[Resource], writes: set[Resource]) -> None:
        self._inner, self._methods, self._reads, self._writes = inner, methods, reads, writes

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._methods:
            if callable(attr) and not name.startswith("_") and name not in ("capabilities", "zone"):
                raise AssertionError(f"{name} is called but no resource is known for it: add it to this test")
            return attr
        reads, writes = self._methods[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            self._reads.update(reads)
            self._writes.update(writes)
            return attr(*args, **kwargs)

        return call


def sample(kind: type[Command]) -> Command:
    """One instance of each command class, with arguments that make it do its work."""
    g1 = Generation(1)
    marker = Marker(g1, RS.digest)
    samples: dict[type, Command] = {
        ReadHead: ReadHead(),
        ReadHeadPlan: ReadHeadPlan(),
        LoadChanges: LoadChanges(Generation(0), g1),
        ReadMarkers: ReadMarkers((KEY,), Generation(0)),  # KEY is empty at the provider: the store is read too
        LoadContentAt: LoadContentAt(((KEY, g1),)),
        WriteBatch: WriteBatch((Write(KEY, None, RS, marker),)),
        LoadDesired: LoadDesired(),
        Publish: Publish(g1, ((KEY, RS),), (("lb-1", HealthRecord(True, 1.0)),)),
        ReadWatermark: ReadWatermark(),
        Collect: Collect(g1),
        Resolve: Resolve((KEY,)),
        Begin: Begin(g1),
        Finish: Finish(g1),
        AdvanceHead: AdvanceHead(Generation(2)),
        SetLastKnownGood: SetLastKnownGood(g1),
        Journal: Journal(((KEY, "write", None, g1, "x"),)),
        Log: Log("debug", "x"),
    }
    return samples[kind]


def recording_interpreter() -> tuple[Interpreter, set[Resource], set[Resource]]:
    reads: set[Resource] = set()
    writes: set[Resource] = set()
    store = MemoryStore()
    store.publish(Generation(0), [(KEY, RS)], 0.0, "setup")
    store.publish(Generation(1), [(EndpointKey(f"www.{ZONE}", "A"), RS)], 0.0, "setup")
    provider = MemoryProvider(ZONE)

    def resolver(keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        reads.add(Resource.DNS)
        seen = recorded_provider.read(keys)
        return {k: Resolution("NXDOMAIN", (), None, seen.get(k, Observed(None, None))) for k in keys}

    recorded_provider = Recording(provider, PROVIDER_METHODS, reads, writes)
    interpreter = Interpreter(Recording(store, STORE_METHODS, reads, writes),  # type: ignore[arg-type]
                              recorded_provider, resolver)  # type: ignore[arg-type]
    return interpreter, reads, writes


ALL = [*REQUEST_CLASSES, *EFFECT_CLASSES]


@pytest.mark.parametrize("kind", ALL, ids=lambda k: k.__name__)
def test_what_a_command_declares_covers_what_the_interpreter_does(kind: type[Command]) -> None:
    interpreter, reads, writes = recording_interpreter()
    cmd = sample(kind)
    step = Step((), cmd) if isinstance(cmd, Request) else Step((cmd,))  # type: ignore[arg-type]
    reply = interpreter.run("enactor-1", step, 1.0)
    assert not isinstance(reply, Failed), reply
    assert bool(reads | writes) == bool(kind.READS | kind.WRITES), f"{kind.__name__}: the sample does not exercise it"
    assert reads <= kind.READS | kind.WRITES, f"{kind.__name__} reads {reads - kind.READS} undeclared"
    assert writes <= kind.WRITES, f"{kind.__name__} writes {writes - kind.WRITES} undeclared"
    if kind.COLLECTS:
        assert P in kind.WRITES


@pytest.mark.parametrize("kind", REQUEST_CLASSES, ids=lambda k: k.__name__)
def test_every_request_is_answered_with_the_reply_it_names(kind: type[Request[Any]]) -> None:
    interpreter, _, _ = recording_interpreter()
    assert kind.replies, f"{kind.__name__} names no reply in its base"
    reply = interpreter.run("enactor-1", Step((), sample(kind)), 1.0)  # type: ignore[arg-type]
    assert isinstance(reply, kind.replies), (kind.__name__, reply)


# -- I8: whatever a command raises, the step ends with Failed -------------------------------------

EXCEPTIONS: list[Callable[[], BaseException]] = [
    lambda: RuntimeError("a bug"), lambda: OverflowError("int too large"), lambda: KeyError("members"),
    lambda: OSError(24, "Too many open files"), lambda: ZeroDivisionError("division by zero"),
]


class Raising:
    """A store and provider whose ``n``-th call raises ``error``; notes every call."""

    def __init__(self, inner: Any, calls: list[str], at: int, error: BaseException) -> None:
        self._inner, self._calls, self._at, self._error = inner, calls, at, error

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            if len(self._calls) == self._at:
                raise self._error
            return attr(*args, **kwargs)

        return call


@settings(max_examples=200, deadline=None)
@given(effects=st.lists(st.sampled_from(EFFECT_CLASSES), max_size=4),
       req=st.one_of(st.none(), st.sampled_from(REQUEST_CLASSES)),
       at=st.integers(min_value=1, max_value=8), error=st.sampled_from(EXCEPTIONS))
def test_a_command_that_raises_anything_ends_the_step_with_failed(
        effects: list[type[Effect]], req: type[Request[Any]] | None, at: int,
        error: Callable[[], BaseException]) -> None:
    calls: list[str] = []
    store = MemoryStore()
    store.publish(Generation(0), [(KEY, RS)], 0.0, "setup")
    provider = MemoryProvider(ZONE)
    exc = error()

    def resolver(keys: Sequence[EndpointKey]) -> dict[EndpointKey, Resolution]:
        calls.append("resolve")
        if len(calls) == at:
            raise exc
        return {}

    interpreter = Interpreter(Raising(store, calls, at, exc), Raising(provider, calls, at, exc),  # type: ignore[arg-type]
                              resolver)
    step = Step(tuple(sample(k) for k in effects), None if req is None else sample(req))  # type: ignore[arg-type]
    reply = interpreter.run("enactor-1", step, 7.0)  # never raises
    if len(calls) >= at:  # the at-th call was made, and raised
        assert isinstance(reply, Failed) and reply.now == 7.0 and reply.retryable
        assert len(calls) == at, f"carried on after the call that raised: {calls}"
    elif req is None:
        assert reply is None
    else:
        assert isinstance(reply, req.replies)


def test_a_command_the_interpreter_does_not_know_fails_the_step() -> None:
    from dnsplane.protocol.legacy import CleanUp

    reply = Interpreter(MemoryStore(), MemoryProvider(ZONE)).run("enactor-1", Step((), CleanUp(Generation(1))), 3.0)
    assert isinstance(reply, Failed) and "CleanUp" in reply.error and not reply.retryable


# -- one interpreter: every driver carries out its steps through Interpreter.run ------------------


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts ``Interpreter.run`` calls per actor name and per request class, whoever the driver is."""
    seen: dict[str, int] = {}
    real = Interpreter.run

    def counting(self: Interpreter, actor: str, step: Step, now: float) -> Any:
        for name in (actor, type(step.request).__name__):
            seen[name] = seen.get(name, 0) + 1
        return real(self, actor, step, now)

    monkeypatch.setattr(Interpreter, "run", counting)
    return seen


def _names(seen: Iterable[str]) -> set[str]:
    return {n.rstrip("0123456789-") for n in seen}


def test_the_simulator_carries_out_steps_through_the_interpreter(runs: dict[str, int]) -> None:
    from dnsplane.sim.driver import run
    from dnsplane.sim.scenario import load

    result = run(load("chaos"), "safe", 3, trace=False)
    assert result.steps > 0
    assert {"planner", "enactor", "collector", "verifier"} <= _names(runs), runs


def test_the_explorer_carries_out_steps_through_the_interpreter(runs: dict[str, int]) -> None:
    from dnsplane.sim.explore import Config, explore

    report = explore(Config(protocol="safe", generations=1))
    assert report.complete and report.violation is None
    assert {"planner", "enactor", "collector", "verifier"} <= _names(runs), runs


def test_the_protocol_harness_carries_out_steps_through_the_interpreter(runs: dict[str, int]) -> None:
    from dnsplane.protocol.planner import Planner
    from tests.protocol.harness import Harness, endpoint

    h = Harness()
    h.run(Planner("planner", ZONE, (endpoint(),)))
    assert runs.get("planner", 0) > 0


def test_the_runtime_carries_out_steps_through_the_interpreter(runs: dict[str, int], tmp_path: Path) -> None:
    from tests.runtime.test_supervision import make_app

    async def scenario() -> None:
        from dnsplane.config import demo_target_ids

        app = make_app(tmp_path, dict.fromkeys(demo_target_ids(), 1))
        ep = app.fleet.endpoints[0]
        app.store.publish(Generation(0), [(ep.key, RS)], 1.0, "test")  # something for the verifier to check
        try:
            for actor in (app.planner, *app.enactors, app.collector, app.verifier):
                await app.feed(actor, Tick(1.0))
        finally:
            app.store.close()
            app.provider.close()

    asyncio.run(scenario())
    assert {"planner", "enactor", "collector", "verifier"} <= _names(runs), runs
    assert runs.get("Resolve", 0) > 0, "the verifier's DNS view is carried out outside the interpreter"
