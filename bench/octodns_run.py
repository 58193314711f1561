"""octoDNS as a benchmark contender: a virtualenv of its own (not a dependency of dnsplane) and one
``octodns-sync --doit --force`` run, end to end, from a YAML source written here.

Used by bench/rfc2136_vs_octodns.py (octodns-bind) and bench/route53_scale.py (octodns-route53).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml


def octodns_venv(path: Path, plugin: str) -> Path:
    """``octodns-sync`` of a virtualenv at ``path`` with octoDNS 1.x and ``plugin`` (made if missing)."""
    exe = path / "bin" / "octodns-sync"
    if not exe.exists() or not list((path / "lib").glob(f"python*/site-packages/{plugin.replace('-', '_')}")):
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "octodns", plugin], check=True)
    return exe


def octodns_sync(exe: Path, work: Path, zone: str, records: Iterable[str], target: Mapping[str, object],
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> float:
    """Write ``records`` (the zone's YAML entries, each a text block such as ``"e1:\\n  type: A ..."``)
    as octoDNS's YAML source for ``zone``, a config syncing it to the provider ``target`` (its mapping:
    ``class`` and options), and time one ``octodns-sync --doit --force``. Returns seconds;
    RuntimeError with the tail of its stderr if it fails; ``subprocess.TimeoutExpired`` (the process
    killed) if it runs longer than ``timeout`` s."""
    config_dir = work / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{zone}yaml").write_text("---\n" + "\n".join(records) + "\n")
    config = {"providers": {"config": {"class": "octodns.provider.yaml.YamlProvider",
                                       "directory": str(config_dir), "enforce_order": False},
                            "target": dict(target)},
              "zones": {zone: {"sources": ["config"], "targets": ["target"]}}}
    (work / "octodns.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    done = subprocess.run([str(exe), "--config-file", str(work / "octodns.yaml"), "--doit", "--force"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"octodns-sync failed:\n{done.stderr[-3000:]}")
    return elapsed


def a_record(label: str, ttl: int, addresses: Iterable[str]) -> str:
    """One A record set as an octoDNS YAML entry."""
    return "\n".join([f"{label}:\n  type: A\n  ttl: {ttl}\n  values:", *(f"  - {a}" for a in addresses)])
