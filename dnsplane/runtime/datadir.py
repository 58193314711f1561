"""The data directory's lock: one ``dnsplane up`` per data directory.

Guarantees:
- ``DataDirLock.acquire`` takes an exclusive ``flock`` on the data directory itself without waiting
  and writes the holder's pid into ``<data-dir>/lock``; a second process gets ``DataDirBusy`` naming that pid
  (exit 2 from ``dnsplane up``), never a second set of actors on the same store and provider
  (two of them would see each other's markers as "ahead of the store");
- the kernel drops the lock when the holder exits, however it exits (crash, SIGKILL): a stale
  lock file never blocks a restart, and a lock file deleted by hand lets no second process in.

Limits: advisory and local: it fences other ``dnsplane up`` processes on this machine, not a
person editing the files, nor a process on another machine sharing the directory over NFS.
``status`` and ``history`` only read, and do not take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from dnsplane.errors import DataDirBusy

LOCK_NAME = "lock"


class OwnerSource(Protocol):
    def owner_id(self) -> str: ...


class DataDirLock:
    """The ``flock`` is taken on the data directory itself, which cannot be deleted while it holds the
    store, so removing the ``lock`` file by hand does not let a second ``up`` in (it did when the lock
    was on the file); the file only tells the second ``up`` which pid holds the directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise DataDirBusy(
                str(self.path.parent), _read_pid(self.path),
                "another `dnsplane up` uses this data directory; stop it first, or give this one its own "
                "--data-dir") from exc
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.path)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self.path.write_text("")
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(data_dir: Path) -> int | None:
    """The pid of the ``dnsplane up`` holding ``data_dir`` (0 when its lock file does not say), or None
    when no process holds it: an ``up`` that is starting holds it before it writes ``instance.json``."""
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(data_dir / LOCK_NAME) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


OWNER_NAME = "owner"


def installation_owner(data_dir: Path, fleet_owner: str, store: OwnerSource) -> str:
    """This installation's owner id (I7): the fleet file's ``owner:``, else the data dir's.

    The data dir's id is generated once and kept in ``store.sqlite`` and, beside it, in the file
    ``<data-dir>/owner``; the file wins, so a damaged ``store.sqlite`` moved away (dnsplane then
    starts a new one) does not take the id with it: the new store would otherwise generate another
    id, and every endpoint this installation wrote would read as another owner's.
    """
    if fleet_owner:
        return fleet_owner
    path = data_dir / OWNER_NAME
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if kept:
            return kept
    owner = store.owner_id()
    with contextlib.suppress(OSError):  # read-only data dir (status): the store still has it
        tmp = path.with_name(f".{OWNER_NAME}.{os.getpid()}")
        tmp.write_text(owner + "\n")
        os.replace(tmp, path)
    return owner
