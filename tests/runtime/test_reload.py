"""runtime/reload: a fleet file read again is the new fleet only when it is valid whole and keeps the
zone, the owner id and the provider; otherwise ``InvalidConfig`` at the line of what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsplane.config import demo_fleet, demo_target_ids, load_fleet
from dnsplane.errors import InvalidConfig
from dnsplane.model import EndpointKey
from dnsplane.runtime.reload import diff, reread

BASE = """\
# the fleet
zone: demo.test
{owner}{provider}defaults: {{ttl: 30}}
targets:
  lb-1: {{addresses: [192.0.2.1]}}
  lb-2: {{addresses: [192.0.2.2]}}
endpoints:
  - {{name: api, targets: [lb-1, lb-2]}}
{more}"""


def write(path: Path, *, zone: str = "demo.test", owner: str = "", provider: str = "", more: str = "") -> Path:
    text = BASE.format(owner=owner, provider=provider, more=more).replace("zone: demo.test", f"zone: {zone}")
    path.write_text(text)
    return path


def test_a_valid_file_is_the_new_fleet_and_the_diff_says_what_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    write(path, more="  - {name: www, targets: [lb-2]}\n")
    new = reread(running)
    change = diff(running, new)
    assert change.added == (EndpointKey("www.demo.test.", "A"),) and not change.changed and not change.removed
    assert change.summary() == "1 added, 0 changed, 0 removed"
    assert diff(new, new).summary() == "no endpoint changed"


def test_an_invalid_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    write(path, more="  - {name: www, targets: [lb-9]}\n")
    with pytest.raises(InvalidConfig) as err:
        reread(running)
    assert str(err.value).startswith(f"{path}:9: ") and "lb-9" in str(err.value)


def test_a_fleet_file_emptied_by_mistake_is_refused_and_never_empties_the_zone(tmp_path: Path) -> None:
    """A source that suddenly yields no endpoints (issue 12, part 2): refused at its line, so the running
    fleet (and every record it wrote) stays; an endpoint merely removed is released, never deleted
    (tests/realworld/test_fleet_reload.py)."""
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    path.write_text(path.read_text().split("endpoints:")[0] + "endpoints: []\n")
    with pytest.raises(InvalidConfig) as err:
        reread(running)
    assert str(err.value) == f"{path}:7: endpoints: must not be empty"


def test_a_guard_added_by_a_reload_is_part_of_the_new_fleet(tmp_path: Path) -> None:
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    assert running.guard is None
    path.write_text(path.read_text() + "guard: {max_change: 30%, release_after: 600}\n")
    guard = reread(running).guard
    assert guard is not None and (guard.max_share, guard.max_count, guard.release_after) == (0.3, None, 600.0)


@pytest.mark.parametrize(("change", "line", "words"), [
    ({"zone": "other.test"}, 2, "zone: cannot change on reload (running demo.test., file says other.test.)"),
    ({"owner": "owner: team-b\n"}, 3, "owner: cannot change on reload"),
    ({"provider": "provider: {kind: route53, hosted_zone_id: Z1}\n"}, 3, "provider: cannot change on reload"),
])
def test_what_a_running_process_cannot_change_is_refused_at_its_line(
        tmp_path: Path, change: dict[str, str], line: int, words: str) -> None:
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    write(path, **change)
    with pytest.raises(InvalidConfig) as err:
        reread(running)
    assert str(err.value).startswith(f"{path}:{line}: {words}"), str(err.value)
    assert "restart dnsplane" in str(err.value)


def test_the_demo_fleet_has_no_file_to_reload() -> None:
    demo = demo_fleet(dict.fromkeys(demo_target_ids(), 1))
    with pytest.raises(InvalidConfig, match="built-in demo fleet has no file"):
        reread(demo)


def test_a_fleet_file_that_disappeared_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "fleet.yaml")
    running = load_fleet(path)
    path.unlink()
    with pytest.raises(InvalidConfig, match="cannot read the fleet file"):
        reread(running)
