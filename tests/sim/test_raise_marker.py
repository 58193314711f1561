"""The explorer's ``RaiseMarker`` fault move: a human raises a marker's ``g=`` by one, in range (issue 13).

No other fault of either model raises ``g=`` in range (``LowerMarker`` lowers it, ``GarbleMarker`` and the
simulator's ``marker_out_of_range`` write it out of range), so the seal half of the verifier's
marker-ahead rule (``marker.generation > head and marker.sealed()``) could die by no model: with the move,
``--generations 2 --faults 1`` kills it (the store's head follows a marker no plan wrote: I4, head bound).
The monitor takes no I2 baseline from such a marker, or the verifier's repair at the head would read as
the marker going down.
"""

from __future__ import annotations

from dnsplane.sim import vocabulary
from dnsplane.sim.statespace import Config, Deliver, HealthChange, RaiseMarker, Tick, World, provider_faults


def _run(world: World, until: object, steps: int = 3000) -> None:
    for step in range(steps):
        if until():  # type: ignore[operator]
            return
        moves = [m for m in world.moves() if type(m) in (Deliver, Tick, HealthChange)]
        world.apply(moves[(step * 7) % len(moves)])
    raise AssertionError("the condition never held")


def _marker_at_two(world: World) -> bool:
    return any(s.marker is not None and s.marker.generation >= 2 for s in world.provider.read_all().values())


def test_a_raised_marker_breaks_its_seal_names_no_plan_and_sets_no_baseline_until_repaired() -> None:
    world = World(Config(protocol="safe", generations=2, faults=1))
    world.apply(Tick("planner"))
    _run(world, lambda: _marker_at_two(world))
    key, seen = next((k, s) for k, s in world.provider.read_all().items()
                     if s.marker is not None and s.marker.generation >= 2)
    assert seen.marker is not None and seen.marker.sealed()
    raised = [m for m in provider_faults(world.provider, world.keys) if type(m) is RaiseMarker and m.key == key]
    assert [m.generation for m in raised] == [seen.marker.generation + 1]
    assert raised[0].kind == vocabulary.MARKER_RAISED and vocabulary.MARKER_RAISED in vocabulary.HUMAN_FAULTS
    world.apply(raised[0])
    after = world.provider.read([key])[key]
    assert after.marker is not None and after.records == seen.records and not after.marker.sealed()
    assert after.marker.generation == seen.marker.generation + 1 and after.marker.digest == seen.marker.digest
    assert world.faults == 1 and not world.monitor.violations
    assert world.monitor.highest_marker[key] == seen.marker.generation  # no plan wrote g+1: no baseline
    assert all(who != f"the marker of {key}" for who, _, _ in world.referenced())
    # the verifier repairs it at the head, below the raised g=: not the marker going down (I2)
    _run(world, lambda: (m := world.provider.read([key])[key].marker) is not None and m.sealed())
    repaired = world.provider.read([key])[key].marker
    assert repaired is not None and repaired.generation <= seen.marker.generation
    assert not world.monitor.violations
