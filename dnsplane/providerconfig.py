"""Provider settings as typed values: one frozen dataclass per fleet-file ``provider.kind``, defined once.

A class's field names ARE the option names of the fleet file's ``provider:`` block, in the order
the error messages and docs list them; each field's ``Option`` (its metadata) says how the value is
written in YAML and what it may be. Nothing else lists option names: ``config`` validates a
``provider:`` block against these fields (reporting ``file:line``), ``runtime/providers`` and the
provider constructors read the fields. The ``memory`` provider has no settings and no kind: it is
the simulator's and the tests', never a fleet file's.

This module sits below ``config`` and the providers so that both can import it (``config`` sits
below the providers and cannot import them; see the layers in pyproject.toml).

Guarantees:
- ``CONFIGS`` maps each kind the fleet file accepts to its class, in the order messages list them;
- a config value is immutable, and constructing one with a wrong-typed or out-of-range value raises
  ``ValueError`` (``config`` checks each option first, so a fleet file never gets that far);
- ``options`` gives the settings that differ from the defaults (and the required ones), for display
  and ``instance.json``; ``config_of(kind, options)`` rebuilds the same value from them.

This module does no I/O: whether a ``key_file`` exists is checked by ``config`` at load, and the
key is read by the provider.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

__all__ = [
    "CONFIGS", "DEFAULT_MAX_RECORDS_PER_TYPE", "EmbeddedConfig", "Option", "ProviderConfig", "Rfc2136Config",
    "Route53Config", "config_of", "option_fields",
]

# How an option is written in YAML and checked: ``text`` and ``file`` are strings (``file``: a path,
# resolved against the fleet file's folder at load), ``address`` an IP address as text, ``url`` an
# http(s) URL with a host (and a numeric port, if any), ``region`` an AWS region name (``us-east-1``),
# ``integer`` an int within ``lo..hi``, ``seconds`` a number above 0, ``boolean`` true or false.
Form = Literal["text", "file", "address", "url", "region", "integer", "seconds", "boolean"]

# An AWS region name: two letters, one or more words, a number (us-east-1, us-gov-west-1, ap-southeast-2)
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


def _url_problem(value: str) -> str | None:
    """Why ``value`` is no URL botocore can send to (it takes ``127.0.0.1:4566`` and fails at the first call)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"must be a URL starting with http:// or https://, got {value!r}"
    if not parts.hostname or any(c.isspace() for c in value):
        return f"must name a host, got {value!r}"
    try:
        parts.port  # noqa: B018 - the property checks the port
    except ValueError:
        return f"must have a port of 1..65535 after the host, got {value!r}"
    return None

DEFAULT_MAX_RECORDS_PER_TYPE = 100  # BIND 9.18's default max-records-per-type (SERVFAIL "too many records")


@dataclass(frozen=True, slots=True)
class Option:
    """How one option is read and what values it takes; ``help`` is what it is for, in a few words."""

    form: Form
    help: str
    lo: int = 1
    hi: int | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` (already of the Python type its form reads as) is not acceptable, or None."""
        match self.form:
            case "text" | "file":
                if not isinstance(value, str):
                    return f"must be text, got {value!r}"
                if not value.strip():
                    return "must not be empty"
            case "url" | "region":
                if not isinstance(value, str):
                    return f"must be text, got {value!r}"
                if self.form == "url":
                    return _url_problem(value)
                if not _REGION.fullmatch(value):
                    return f"must be an AWS region name such as us-east-1, got {value!r}"
            case "address":
                if not isinstance(value, str):
                    return f"must be text, got {value!r}"
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    return f"must be an IP address ({self.help}), got {value!r}"
            case "integer":
                if isinstance(value, bool) or not isinstance(value, int):
                    return f"must be an integer, got {value!r}"
                if value < self.lo or (self.hi is not None and value > self.hi):
                    bounds = f"be at least {self.lo}" if self.hi is None else f"be within {self.lo}..{self.hi}"
                    return f"must {bounds}, got {value}"
            case "seconds":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return f"must be a number, got {value!r}"
                if not value > 0:
                    return f"must be more than 0, got {value:g}"
            case "boolean":
                if not isinstance(value, bool):
                    return f"must be true or false, got {value!r}"
        return None


def _option(form: Form, help: str, *, lo: int = 1, hi: int | None = None) -> dict[str, Option]:
    return {"option": Option(form, help, lo, hi)}


def option_fields(cls: type[ProviderConfig]) -> dict[str, tuple[Option, bool]]:
    """Each option of a kind, in order: its ``Option`` and whether it is required (has no default)."""
    return {f.name: (f.metadata["option"], f.default is MISSING) for f in fields(cls)}


def _check(config: ProviderConfig) -> None:
    for name, (option, required) in option_fields(type(config)).items():
        value = getattr(config, name)
        if value is None and not required:
            continue
        problem = option.problem(value)
        if problem:
            raise ValueError(f"{config.kind} provider: {name}: {problem}")


def _options(config: ProviderConfig) -> tuple[tuple[str, object], ...]:
    return tuple((f.name, getattr(config, f.name)) for f in fields(config)
                 if f.default is MISSING or getattr(config, f.name) != f.default)


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """Records in ``<data-dir>/dns.sqlite``, served by dnsplane's own DNS server; no options."""

    kind: ClassVar[Literal["embedded"]] = "embedded"

    @property
    def options(self) -> tuple[tuple[str, object], ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Rfc2136Config:
    """A zone on an RFC 2136 (dynamic UPDATE) server such as BIND9, every message TSIG-signed."""

    kind: ClassVar[Literal["rfc2136"]] = "rfc2136"

    server: str = field(metadata=_option("address", "the primary server of the zone"))
    port: int = field(default=53, metadata=_option("integer", "the server's DNS port", hi=65_535))
    key_file: str | None = field(default=None, metadata=_option("file", "a BIND key file (tsig-keygen)"))
    key_name: str | None = field(default=None, metadata=_option("text", "the key's name in key_file"))
    timeout: float = field(default=5.0, metadata=_option("seconds", "seconds per network operation"))
    max_batch: int = field(default=500, metadata=_option("integer", "endpoints per apply", hi=10_000))
    max_records_per_type: int = field(default=DEFAULT_MAX_RECORDS_PER_TYPE, metadata=_option(
        "integer", "records of one type the server keeps at a name (BIND's max-records-per-type)", hi=65_535))

    def __post_init__(self) -> None:
        _check(self)

    @property
    def options(self) -> tuple[tuple[str, object], ...]:
        return _options(self)


@dataclass(frozen=True, slots=True)
class Route53Config:
    """An Amazon Route 53 hosted zone, through boto3 (credentials: boto3's normal chain)."""

    kind: ClassVar[Literal["route53"]] = "route53"

    hosted_zone_id: str = field(metadata=_option("text", "the hosted zone's id, 'Z…' or '/hostedzone/Z…'"))
    region: str = field(default="us-east-1", metadata=_option("region", "the signing region"))
    endpoint_url: str | None = field(default=None, metadata=_option("url", "an emulator's URL"))
    wait_insync: bool = field(default=False, metadata=_option("boolean", "wait until each change is INSYNC"))
    account: str | None = field(default=None, metadata=_option(
        "text", "the AWS account's name for its shared request budget (default: the access key id)"))

    def __post_init__(self) -> None:
        _check(self)

    @property
    def options(self) -> tuple[tuple[str, object], ...]:
        return _options(self)


ProviderConfig = EmbeddedConfig | Rfc2136Config | Route53Config

CONFIGS: dict[str, type[ProviderConfig]] = {c.kind: c for c in (EmbeddedConfig, Rfc2136Config, Route53Config)}


def config_of(kind: str, options: Mapping[str, Any]) -> ProviderConfig:
    """The config of ``kind`` with these options (as ``options`` gives them). Raises ``ValueError``."""
    cls = CONFIGS.get(kind)
    if cls is None:
        raise ValueError(f"unknown provider kind {kind!r} (known: {', '.join(CONFIGS)})")
    known = option_fields(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{kind} provider: unknown options {', '.join(unknown)} (known: {', '.join(known)})")
    missing = [name for name, (_, required) in known.items() if required and name not in options]
    if missing:
        raise ValueError(f"{kind} provider: missing required options {', '.join(missing)}")
    return cls(**options)
