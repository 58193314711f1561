"""The explorer's ``LowerMarker`` fault move: a human sets a marker's ``g=`` back (issue 13).

The simulator's ``corrupt`` fault has had this mode (``marker_stale``) since chaos 708; the explorer
had no such move, so no exhaustive search could reach the states the enactor's and the verifier's
broken-seal rules guard (with ``--generations 2 --faults 1`` the verifier's is now killed: a repair
from a snapshot loaded before the newer write would serve older content, I2).
"""

from __future__ import annotations

from dnsplane.sim import vocabulary
from dnsplane.sim.statespace import Config, Deliver, HealthChange, LowerMarker, Tick, World, provider_faults


def _written_at_two() -> World:
    """A world in which some endpoint's marker names generation 2 (actors moved in a fixed order)."""
    world = World(Config(protocol="safe", generations=2, faults=1))
    world.apply(Tick("planner"))
    for step in range(3000):
        if any(seen.marker is not None and seen.marker.generation >= 2
               for seen in world.provider.read_all().values()):
            return world
        moves = [m for m in world.moves() if type(m) in (Deliver, Tick, HealthChange)]
        world.apply(moves[(step * 7) % len(moves)])
    raise AssertionError("no endpoint reached generation 2")


def test_a_marker_is_set_back_to_every_older_generation_breaking_its_seal_and_naming_no_plan() -> None:
    world = _written_at_two()
    key, seen = next((k, s) for k, s in world.provider.read_all().items()
                     if s.marker is not None and s.marker.generation >= 2)
    assert seen.marker is not None and seen.marker.sealed() and seen.records is not None
    lowered = [m for m in provider_faults(world.provider, world.keys) if type(m) is LowerMarker and m.key == key]
    assert [m.generation for m in lowered] == list(range(1, seen.marker.generation))
    assert lowered[0].kind == vocabulary.MARKER_STALE and vocabulary.MARKER_STALE in vocabulary.HUMAN_FAULTS
    world.apply(lowered[0])
    after = world.provider.read([key])[key]
    assert after.marker is not None and after.records == seen.records
    assert after.marker.generation == 1 and after.marker.digest == seen.records.digest
    assert after.marker.prev == seen.marker.prev and after.marker.owner == seen.marker.owner
    assert not after.marker.sealed()
    assert world.faults == 1 and not world.monitor.violations
    # a person's g= names no plan: the collector may delete plan 1 (no I3 reference)
    assert all(who != f"the marker of {key}" for who, _, _ in world.referenced())
