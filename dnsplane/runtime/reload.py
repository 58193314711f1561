"""Fleet reload: re-read the fleet file a running ``dnsplane up`` started from, validate it whole, and
decide whether it may replace the running fleet.

Guarantees:
- ``reread(running)`` returns the new ``Fleet`` only when the whole file passes the checks of
  ``dnsplane validate`` and changes nothing a running process cannot change; otherwise it raises
  ``InvalidConfig`` (``file:line: what is wrong``) and the caller applies nothing, so a refused
  reload leaves the running fleet exactly as it was (never half of a file);
- what cannot change without a restart: the ``zone``, the ``owner`` id (every marker carries it)
  and the ``provider`` section (the provider is opened once, with its key file read then); the
  data directory and ``--dns`` are command-line options and are not in the file at all. The
  built-in demo fleet has no file and is never reloaded;
- ``Outcome`` is what ``dnsplane reload`` reads back from ``instance.json``: when the file was read
  (``started``, wall-clock seconds), whether it was applied, and the message.

This module reads the fleet file and does no other I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from dnsplane.config import DEMO_SOURCE, Fleet, load_fleet
from dnsplane.errors import InvalidConfig
from dnsplane.model import EndpointKey


@dataclass(frozen=True, slots=True)
class Outcome:
    """One reload as ``instance.json`` records it under ``"reload"``."""

    started: float  # when the file was read (after the request): a client waits for one at or after its request
    finished: float
    ok: bool
    message: str
    added: int = 0
    changed: int = 0
    removed: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Diff:
    added: tuple[EndpointKey, ...]
    changed: tuple[EndpointKey, ...]
    removed: tuple[EndpointKey, ...]

    def summary(self) -> str:
        if not (self.added or self.changed or self.removed):
            return "no endpoint changed"
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"


def diff(old: Fleet, new: Fleet) -> Diff:
    before = {e.key: e for e in old.endpoints}
    after = {e.key: e for e in new.endpoints}
    return Diff(
        tuple(k for k in after if k not in before),
        tuple(k for k, e in after.items() if k in before and before[k] != e),
        tuple(k for k in before if k not in after),
    )


def reread(running: Fleet) -> Fleet:
    """The running fleet's file, read again and validated whole. Raises ``InvalidConfig``."""
    path = running.source
    if path == DEMO_SOURCE:
        raise InvalidConfig(path, 0, "the built-in demo fleet has no file to re-read; start with "
                            "`dnsplane up --fleet FILE` to reload a fleet")
    new = load_fleet(path)
    if new.zone != running.zone:
        raise InvalidConfig(path, _top_line(path, "zone"),
                            f"zone: cannot change on reload (running {running.zone}, file says {new.zone}); "
                            "restart dnsplane to manage another zone")
    if new.owner != running.owner:
        raise InvalidConfig(path, _top_line(path, "owner"),
                            f"owner: cannot change on reload (running {running.owner or '(the data directory id)'}, "
                            f"file says {new.owner or '(the data directory id)'}); every marker carries it: "
                            "restart dnsplane to take another owner id")
    if new.provider != running.provider:
        raise InvalidConfig(path, _top_line(path, "provider"),
                            f"provider: cannot change on reload (running {_describe(running)}, file says "
                            f"{_describe(new)}); restart dnsplane to use another provider")
    if new.serve != running.serve:
        raise InvalidConfig(path, _top_line(path, "serve"),
                            "serve: cannot change on reload (the DNS server reads it at start); restart dnsplane "
                            "to change zone transfers, NOTIFY targets or name servers")
    return new


def _describe(fleet: Fleet) -> str:
    options = ", ".join(f"{k}: {v}" for k, v in fleet.provider.options)
    return f"{fleet.provider.kind}" + (f" ({options})" if options else "")


def _top_line(path: str, key: str) -> int:
    """The 1-based line of a top-level key (of the top-level mapping when the key is absent); 0 when
    the file changed under us and no longer parses (the message still says what is wrong)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return 0
    if not isinstance(root, yaml.MappingNode):
        return 0
    for knode, _ in root.value:
        if isinstance(knode, yaml.ScalarNode) and knode.value == key:
            return int(knode.start_mark.line) + 1
    return int(root.start_mark.line) + 1
