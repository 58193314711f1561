"""Fleet files: YAML in, frozen model values out, every mistake reported as ``file:line: what is wrong``.

Guarantees:
- ``load_fleet`` / ``parse_fleet`` either return a fully validated ``Fleet`` or raise ``InvalidConfig``
  whose ``line`` is the 1-based line of the exact key or value at fault (a YAML syntax error: the line of
  the YAML error mark; line 0 only when the file cannot be read at all);
- validation is strict: unknown keys (the message lists the allowed ones), duplicate mapping keys, wrong
  scalar types, out-of-range values, names outside the zone, addresses of the wrong family, undefined or
  repeated targets, duplicate endpoints and missing required keys are all refused;
- nothing is coerced except names (lower-cased, made absolute against the zone), addresses (canonical
  text) and the record type (upper-cased);
- the first error is reported, deterministically: sections are checked in the order zone, defaults,
  targets, endpoints, and each section in document order;
- a ``Fleet`` is immutable and every target id in it has exactly one definition;
- the ``provider:`` block becomes its kind's typed config (``dnsplane.providerconfig``): the allowed
  options are that class's fields, read and checked as each field's ``Option`` says, so option names
  are listed nowhere here;
- an endpoint whose write cannot fit the provider's limits is refused at the line of its ``name``
  (``fit_problem``): RFC 2136, its distinct addresses above the server's records of one type at a
  name (``provider.max_records_per_type``, 100 by default: BIND 9.18's ``max-records-per-type``),
  its marker TXT above one record's 65,535 bytes, or a change of it (old and new content in one
  UPDATE) above one DNS message; Route 53, a change above one change batch's 1,000 records or
  32,000 characters (less the zone's write token), more than 100 weighted targets, or a marker name
  over 255 octets. Estimated for the worst case (every target live, 4-digit weights); the
  providers reject such an endpoint's write alone at run time (``Rejected``) if one gets through.

The format is documented in docs/fleet-file.md. This module reads files; it does no other I/O.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import gc
import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NoReturn, cast
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dnsplane.errors import InvalidConfig
from dnsplane.model import (
    MAX_TTL,
    MIN_TTL,
    WEIGHT_SCALE,
    Endpoint,
    EndpointKey,
    HealthCheck,
    Member,
    Policy,
    RecordSet,
    RecordType,
    Target,
    ZoneGuard,
    in_zone,
    marker_name,
    normalise_name,
    owner_problem,
    validate_address,
)
from dnsplane.providerconfig import (
    CONFIGS,
    DEFAULT_MAX_RECORDS_PER_TYPE,
    EmbeddedConfig,
    Option,
    ProviderConfig,
    Rfc2136Config,
    Route53Config,
    option_fields,
)

__all__ = [
    "DEMO_SOURCE", "Fleet", "ServeConfig", "TransferKey", "demo_fleet", "demo_target_ids", "load_fleet", "parse_fleet",
]

DEMO_SOURCE = "<demo>"

_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR = (_TAG + t for t in ("null", "bool", "int", "float", "str"))
_MAP, _SEQ, _MERGE, _TIMESTAMP = (_TAG + t for t in ("map", "seq", "merge", "timestamp"))
_TEXTUAL = frozenset({_STR, _INT, _FLOAT, _BOOL, _TIMESTAMP})  # scalars a text field takes as written

_TOP_KEYS = ("zone", "owner", "provider", "serve", "guard", "defaults", "targets", "endpoints")
_GUARD_KEYS = ("max_change", "min_existing", "release_after")
_SERVE_KEYS = ("ns", "transfer", "notify", "journal", "rrl")
_RRL_KEYS = ("per_second", "slip")
_TRANSFER_KEYS = ("allow", "key")
_KEY_KEYS = ("name", "algorithm", "secret", "file")
_DEFAULTS_KEYS = ("ttl", "policy")
_TARGET_KEYS = ("addresses", "capacity", "check")
_CHECK_KEYS = ("tcp", "http", "expect_status", "timeout")
_ENDPOINT_KEYS = ("name", "type", "ttl", "targets", "policy", "adopt")
_POLICY_KEYS = ("min_targets", "max_weight_shift", "fail_open", "rise", "fall", "answer")

_TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")

_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_TARGET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_RANGE = re.compile(r"\{(\d{1,9})\.\.(\d{1,9})\}")  # one endpoint per number: api-{1..500}
MAX_RANGE = 10_000_000  # names one endpoint entry's range may give
_PLACEHOLDER = re.compile(r"\$\{port:([A-Za-z0-9][A-Za-z0-9_.-]*)\}")


@dataclass(frozen=True, slots=True)
class TransferKey:
    """The TSIG key zone transfers must be signed with: inline (``secret``) or a BIND key ``file``.

    ``name`` is absolute; with ``file``, ``name`` may be "" (the file's only key) and ``algorithm`` and
    ``secret`` are read from the file when the server starts (``dnsplane.dns.transfer``).
    """

    name: str
    algorithm: str = "hmac-sha256"
    secret: str = ""
    file: str = ""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """The embedded server as a hidden primary (``serve:``): who may transfer the zone, whom to NOTIFY.

    ``ns``: the zone's NS names (``()``: ``ns1.<zone>``, glue 127.0.0.1, as before ``serve:`` existed).
    ``transfer`` False (no ``serve.transfer`` block): every AXFR/IXFR is REFUSED. Otherwise a transfer
    is answered to a client whose address is in one of ``allow`` (networks, canonical text) and, when
    ``key`` is set, only when the request is signed with that key. ``notify`` lists (host, port) sent a
    NOTIFY after every applied change; ``journal`` is how many zone versions IXFR can reach back.
    ``rrl_per_second``: response rate limiting over UDP (RRL, ``dnsplane.dns.ratelimit``), None = off;
    ``rrl_slip``: every ``rrl_slip``-th answer over the limit truncated instead of dropped (0: all dropped).
    """

    transfer: bool = False
    allow: tuple[str, ...] = ()
    key: TransferKey | None = None
    notify: tuple[tuple[str, int], ...] = ()
    journal: int = 100
    ns: tuple[str, ...] = ()  # the zone's NS (absolute, outside the zone); () = ns1.<zone> with glue 127.0.0.1
    rrl_per_second: int | None = None
    rrl_slip: int = 2


@dataclass(frozen=True, slots=True)
class Fleet:
    """The endpoints dnsplane owns in one zone, as loaded from a fleet file.

    ``zone`` is absolute and lower-case (``"demo.test."``); ``endpoints`` keep file order; ``source`` is
    the path the fleet came from (``"<demo>"`` for the built-in demo) and takes no part in equality.
    ``owner`` is the owner id the fleet file sets (``owner:``), or "" (the data dir's own id is used).
    """

    zone: str
    endpoints: tuple[Endpoint, ...]
    source: str = field(default="<string>", compare=False)
    provider: ProviderConfig = field(default_factory=EmbeddedConfig)
    owner: str = ""
    serve: ServeConfig = field(default_factory=ServeConfig)
    guard: ZoneGuard | None = None  # ``guard:``: the zone-wide limit on one plan's changes

    def __post_init__(self) -> None:
        seen: set[EndpointKey] = set()
        for e in self.endpoints:
            if e.key in seen:
                raise InvalidConfig(self.source, 0, f"duplicate endpoint {e.key}")
            seen.add(e.key)
        self.targets()  # refuses two different definitions of one target id

    def targets(self) -> dict[str, Target]:
        """Every distinct target by id, in order of first use. Raises ``InvalidConfig`` on a conflict."""
        found: dict[str, Target] = {}
        for e in self.endpoints:
            for t in e.targets:
                first = found.setdefault(t.id, t)
                if first is not t and first != t:
                    raise InvalidConfig(
                        self.source, 0, f"target {t.id} has two different definitions (endpoint {e.key} differs)"
                    )
        return found

    def endpoint(self, key: EndpointKey | str) -> Endpoint:
        """The endpoint with this key (a string is read by ``EndpointKey.parse``). Raises ``KeyError``."""
        wanted = EndpointKey.parse(key) if isinstance(key, str) else EndpointKey(normalise_name(key[0]), key[1])
        for e in self.endpoints:
            if e.key == wanted:
                return e
        raise KeyError(f"no endpoint {wanted} in the fleet from {self.source}")


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file. Raises ``InvalidConfig``."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InvalidConfig(where, 0, f"cannot read the fleet file: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidConfig(where, raw.count(b"\n", 0, e.start) + 1, f"the file is not UTF-8 text: {e.reason}") from e
    return parse_fleet(text, where)


def parse_fleet(text: str, path: str = "<string>") -> Fleet:
    """Validate fleet-file text; ``path`` is only used in error messages. Raises ``InvalidConfig``."""
    with _no_cyclic_gc():
        return _Parser(path).fleet(text)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Parsing allocates millions of objects (nodes, marks, model values) and frees none until the end, so
    the cyclic collector would run again and again over a growing heap: with it, 100,000 endpoints took
    3x as long. The nodes form no cycles; reference counting frees them all when parsing ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def demo_target_ids() -> list[str]:
    """Ids of the demo targets whose health-check port ``demo_fleet`` needs, in file order."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(_demo_text())))


def demo_fleet(ports: Mapping[str, int]) -> Fleet:
    """The built-in demo fleet, each ``${port:<id>}`` placeholder replaced by ``ports[<id>]``.

    ``ports`` maps every id of ``demo_target_ids()`` to a TCP port on 127.0.0.1 (extra ids are ignored).
    The IPv6 twins (``lb-1-v6``...) share the port of their IPv4 twin, so one fake load balancer going
    down takes both out. Raises ``InvalidConfig`` (path ``<demo>``) when a port is missing or invalid.
    """
    text = _demo_text()

    def port_of(m: re.Match[str]) -> str:
        tid = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        if tid not in ports:
            needed = ", ".join(demo_target_ids())
            raise InvalidConfig(DEMO_SOURCE, line, f"no port given for demo target {tid!r} (needed: {needed})")
        port = ports[tid]
        if isinstance(port, bool) or not isinstance(port, int):
            raise InvalidConfig(DEMO_SOURCE, line, f"port for demo target {tid!r} must be an integer, got {port!r}")
        return str(port)

    return parse_fleet(_PLACEHOLDER.sub(port_of, text), DEMO_SOURCE)


def _demo_text() -> str:
    return resources.files("dnsplane.demo").joinpath("fleet.yaml").read_text(encoding="utf-8")


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_Entries = dict[str, tuple[Node, Node]]  # key text -> (key node, value node), in document order


class _Parser:
    """Walks composed YAML nodes (each knows its start line) and builds model values."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.constructor = SafeConstructor()

    # -- errors and YAML -------------------------------------------------------------------------

    def fail(self, node: Node, message: str) -> NoReturn:
        raise InvalidConfig(self.path, _line(node), message)

    def compose(self, text: str) -> Node | None:
        """The document's node tree. libyaml's composer when PyYAML has it (the same nodes and marks, 3-8x
        faster on a large fleet file); on any error the pure-Python composer runs again, for its messages,
        which name what it found (libyaml's say "found character that cannot start any token")."""
        if yaml.__with_libyaml__:
            fast: yaml.CSafeLoader | None = None
            try:
                fast = yaml.CSafeLoader(text)  # encodes the text: refuses lone surrogates
                return cast(Node | None, fast.get_single_node())
            except (yaml.YAMLError, UnicodeEncodeError):
                pass  # located and worded below
            finally:
                if fast is not None:
                    fast.dispose()
        loader: yaml.SafeLoader | None = None
        try:
            loader = yaml.SafeLoader(text)
            return cast(Node | None, loader.get_single_node())
        except yaml.reader.ReaderError as e:
            line = text.count("\n", 0, e.position) + 1
            char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
            raise InvalidConfig(self.path, line, f"YAML error: unacceptable character {char}: {e.reason}") from e
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = "; ".join(p for p in (e.context, e.problem) if p) or "malformed YAML"
            raise InvalidConfig(self.path, mark.line + 1 if mark else 1, f"YAML syntax error: {problem}") from e
        except yaml.YAMLError as e:
            raise InvalidConfig(self.path, 1, f"YAML error: {e}") from e
        finally:
            if loader is not None:
                loader.dispose()

    # -- typed access to nodes ---------------------------------------------------------------------

    @staticmethod
    def shown(node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        if node.tag == _NULL:
            return "nothing (null)"
        if node.tag == _STR:
            return repr(node.value)
        if node.tag.startswith(_TAG):
            return str(node.value)
        return f"{node.value!r} tagged {node.tag}"

    def entries(
        self, node: Node, where: str, allowed: tuple[str, ...] | None = None, required: tuple[str, ...] = ()
    ) -> _Entries:
        """A mapping's entries; refuses non-mappings, merge keys, non-text, duplicate and unknown keys."""
        if not isinstance(node, MappingNode) or node.tag != _MAP:
            self.fail(node, f"{where}: must be a mapping, got {self.shown(node)}")
        found: _Entries = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                self.fail(knode, f"{where}: YAML merge keys ('<<') are not supported; use 'defaults'")
            if not isinstance(knode, ScalarNode) or knode.tag not in _TEXTUAL:
                self.fail(knode, f"{where}: keys must be text, got {self.shown(knode)}")
            key = str(knode.value)
            if key in found:
                first = _line(found[key][0])
                self.fail(knode, f"{where}: duplicate key {key!r} (first at line {first})")
            if allowed is not None and key not in allowed:
                hint = _suggest(key, allowed)
                self.fail(knode, f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}")
            found[key] = (knode, vnode)
        for key in required:
            if key not in found:
                self.fail(node, f"{where}: missing required key {key!r}")
        return found

    def items(self, node: Node, where: str, what: str) -> list[Node]:
        """A non-empty list's items."""
        if not isinstance(node, SequenceNode) or node.tag != _SEQ:
            self.fail(node, f"{where}: must be a list of {what}, got {self.shown(node)}")
        if not node.value:
            self.fail(node, f"{where}: must not be empty")
        return list(node.value)

    def text(self, node: Node, where: str) -> str:
        """A text scalar, taken as written (``name: 1`` is the text ``"1"``)."""
        if not isinstance(node, ScalarNode) or node.tag not in _TEXTUAL:
            self.fail(node, f"{where}: must be text, got {self.shown(node)}")
        return str(node.value)

    def integer(self, node: Node, where: str, lo: int, hi: int | None = None) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.fail(node, f"{where}: must be an integer, got {self.shown(node)}")
        value = cast(int, self.constructor.construct_object(node))
        if value < lo or (hi is not None and value > hi):
            bounds = f"be at least {lo}" if hi is None else f"be within {lo}..{hi}"
            self.fail(node, f"{where}: must {bounds}, got {value}")
        return value

    def number(self, node: Node, where: str) -> float:
        """A finite int or float scalar, as float."""
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _FLOAT):
            self.fail(node, f"{where}: must be a number, got {self.shown(node)}")
        value = float(cast(float, self.constructor.construct_object(node)))
        if not math.isfinite(value):
            self.fail(node, f"{where}: must be a finite number, got {node.value}")
        return value

    def boolean(self, node: Node, where: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.fail(node, f"{where}: must be true or false, got {self.shown(node)}")
        return bool(self.constructor.construct_object(node))

    # -- the fleet ---------------------------------------------------------------------------------

    def fleet(self, text: str) -> Fleet:
        root = self.compose(text)
        if root is None:
            raise InvalidConfig(self.path, 1, "the fleet file is empty; expected keys zone, targets, endpoints")
        top = self.entries(root, "top level", _TOP_KEYS, required=("zone", "targets", "endpoints"))
        zone = self.zone(top["zone"][1])
        default_ttl: tuple[int, Node] | None = None
        default_policy: dict[str, tuple[object, Node]] = {}
        if "defaults" in top:
            defaults = self.entries(top["defaults"][1], "defaults", _DEFAULTS_KEYS)
            if "ttl" in defaults:
                node = defaults["ttl"][1]
                default_ttl = (self.integer(node, "defaults.ttl", MIN_TTL, MAX_TTL), node)
            if "policy" in defaults:
                default_policy = self.policy_fields(defaults["policy"][1], "defaults.policy")
        provider = self.provider(top["provider"][1]) if "provider" in top else EmbeddedConfig()
        serve = self.serve(top["serve"][1], zone) if "serve" in top else ServeConfig()
        if "serve" in top and provider.kind != "embedded":
            kind = provider.kind
            self.fail(top["serve"][0], f"serve: applies to the embedded provider only (this fleet's is {kind})")
        guard = self.guard(top["guard"][1]) if "guard" in top else None
        owner = ""
        if "owner" in top:
            onode = top["owner"][1]
            owner = self.text(onode, "owner").strip()
            problem = owner_problem(owner)
            if problem:
                self.fail(onode, f"owner: {problem}")
        targets = self.targets(top["targets"][1])
        endpoints: list[Endpoint] = []
        seen: dict[EndpointKey, Node] = {}
        for i, node in enumerate(self.items(top["endpoints"][1], "endpoints", "endpoints")):
            for endpoint in self.endpoints(node, f"endpoints[{i}]", zone, default_ttl, default_policy, targets, seen):
                problem = fit_problem(endpoint, provider)
                if problem:
                    pairs = node.value if isinstance(node, MappingNode) else []
                    name_node = next((v for k, v in pairs if getattr(k, "value", None) == "name"), node)
                    self.fail(name_node, f"endpoints[{i}] ({endpoint.key}): {problem}")
                endpoints.append(endpoint)
        return Fleet(zone, tuple(endpoints), self.path, provider, owner, serve, guard)

    def guard(self, node: Node) -> ZoneGuard:
        """``guard:``: ``max_change`` (a share ``"30%"`` or a count ``500``), ``min_existing`` (default 10),
        ``release_after`` (seconds; without it a held plan waits for ``dnsplane confirm``)."""
        entries = self.entries(node, "guard", _GUARD_KEYS, required=("max_change",))
        limit = entries["max_change"][1]
        share: float | None = None
        count: int | None = None
        if isinstance(limit, ScalarNode) and limit.tag == _INT:
            count = self.integer(limit, "guard.max_change", 1)
        else:
            text = self.text(limit, "guard.max_change").strip()
            try:
                share = float(text.removesuffix("%")) / 100 if text.endswith("%") else None
            except ValueError:
                share = None
            if share is None or not 0 < share <= 1:
                self.fail(limit, f"guard.max_change: a share such as \"30%\" (more than 0 %, at most 100 %) or a "
                          f"count of endpoints such as 500, got {self.shown(limit)}")
        min_existing = self.integer(entries["min_existing"][1], "guard.min_existing", 0) \
            if "min_existing" in entries else 10
        release: float | None = None
        if "release_after" in entries:
            rnode = entries["release_after"][1]
            release = self.number(rnode, "guard.release_after")
            if not 0 < release <= 7 * 86400:
                self.fail(rnode, "guard.release_after: seconds, more than 0 and at most 604800 (7 days), "
                          f"got {release:g}")
        return ZoneGuard(share, count, min_existing, release)

    def serve(self, node: Node, zone: str) -> ServeConfig:
        """The ``serve:`` block: zone transfers (ACL and TSIG key), NOTIFY targets, IXFR journal length, RRL."""
        entries = self.entries(node, "serve", _SERVE_KEYS)
        transfer = False
        allow: list[str] = []
        key: TransferKey | None = None
        if "transfer" in entries:
            transfer = True
            tr = self.entries(entries["transfer"][1], "serve.transfer", _TRANSFER_KEYS, required=("allow",))
            for i, anode in enumerate(self.items(tr["allow"][1], "serve.transfer.allow", "addresses or prefixes")):
                at = f"serve.transfer.allow[{i}]"
                raw = self.text(anode, at).strip()
                try:
                    net = ipaddress.ip_network(raw, strict=True)
                except ValueError as e:
                    self.fail(anode, f"{at}: must be an IP address or prefix such as 192.0.2.0/24, got {raw!r} ({e})")
                if str(net) in allow:
                    self.fail(anode, f"{at}: duplicate {net}")
                allow.append(str(net))
            if "key" in tr:
                key = self.transfer_key(tr["key"][1])
        notify: list[tuple[str, int]] = []
        if "notify" in entries:
            for i, nnode in enumerate(self.items(entries["notify"][1], "serve.notify", "'address:port' items")):
                at = f"serve.notify[{i}]"
                host, port = self.host_port(nnode, at)
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    self.fail(nnode, f"{at}: the host must be an IP address (a secondary), got {host!r}")
                if (host, port) in notify:
                    self.fail(nnode, f"{at}: duplicate {host}:{port}")
                notify.append((host, port))
        journal = 100
        if "journal" in entries:
            journal = self.integer(entries["journal"][1], "serve.journal", 1, 100_000)
        ns: list[str] = []
        if "ns" in entries:
            for i, nnode in enumerate(self.items(entries["ns"][1], "serve.ns", "name server names")):
                at = f"serve.ns[{i}]"
                raw = self.text(nnode, at).strip()
                if not raw.endswith("."):
                    self.fail(nnode, f"{at}: must be an absolute name with a trailing dot, got {raw!r}")
                name = normalise_name(raw)
                problem = _name_problem(name)
                if problem:
                    self.fail(nnode, f"{at}: {problem}")
                if in_zone(name, zone):
                    self.fail(nnode, f"{at}: {name} is inside the zone {zone}, which would need glue addresses "
                                     "dnsplane does not serve; name a server outside the zone")
                if name in ns:
                    self.fail(nnode, f"{at}: duplicate {name}")
                ns.append(name)
        rrl_per_second, rrl_slip = None, 2
        if "rrl" in entries:
            rrl = self.entries(entries["rrl"][1], "serve.rrl", _RRL_KEYS, required=("per_second",))
            rrl_per_second = self.integer(rrl["per_second"][1], "serve.rrl.per_second", 1, 1_000_000)
            if "slip" in rrl:
                rrl_slip = self.integer(rrl["slip"][1], "serve.rrl.slip", 0, 10)
        return ServeConfig(transfer, tuple(allow), key, tuple(notify), journal, tuple(ns), rrl_per_second, rrl_slip)

    def transfer_key(self, node: Node) -> TransferKey:
        """``key: {name, algorithm, secret}`` or ``key: {file[, name]}`` (a BIND key file, as rfc2136 reads)."""
        where = "serve.transfer.key"
        fields = self.entries(node, where, _KEY_KEYS)
        if "file" in fields:
            for k in ("secret", "algorithm"):
                if k in fields:
                    self.fail(fields[k][0], f"{where}: give either file (and name) or name, algorithm and secret")
            option = Option("file", "a BIND key file (tsig-keygen)")
            path = cast(str, self.option(fields["file"][1], f"{where}.file", option))
            name = normalise_name(self.text(fields["name"][1], f"{where}.name")) if "name" in fields else ""
            return TransferKey(name, "", "", path)
        for k in ("name", "secret"):
            if k not in fields:
                self.fail(node, f"{where}: missing required key {k!r} (or give file: a BIND key file)")
        name = self.text(fields["name"][1], f"{where}.name").strip()
        problem = _name_problem(normalise_name(name)) if name not in ("", ".") else "must not be empty"
        if problem:
            self.fail(fields["name"][1], f"{where}.name: {problem}")
        algorithm = "hmac-sha256"
        if "algorithm" in fields:
            anode = fields["algorithm"][1]
            algorithm = self.text(anode, f"{where}.algorithm").strip().lower()
            if algorithm not in _TSIG_ALGORITHMS:
                self.fail(anode, f"{where}.algorithm: must be one of {', '.join(_TSIG_ALGORITHMS)}, got {algorithm!r}")
        snode = fields["secret"][1]
        secret = self.text(snode, f"{where}.secret").strip()
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw:
            self.fail(snode, f"{where}.secret: must be non-empty base64 (tsig-keygen writes one)")
        return TransferKey(normalise_name(name), algorithm, secret)

    def provider(self, node: Node) -> ProviderConfig:
        """The ``provider:`` block as its kind's typed config; the options are that class's fields."""
        entries = self.entries(node, "provider", None, required=("kind",))
        kind = self.text(entries["kind"][1], "provider.kind")
        if kind not in CONFIGS:
            self.fail(entries["kind"][1], f"provider.kind: must be one of {', '.join(CONFIGS)}, got {kind!r}")
        cls = CONFIGS[kind]
        known = option_fields(cls)
        entries = self.entries(node, f"provider ({kind})", ("kind", *known), required=("kind",))
        for name, (option, required) in known.items():
            if required and name not in entries:
                self.fail(node, f"provider ({kind}): missing required key {name!r} ({option.help})")
        options: dict[str, object] = {}
        for name, (_, vnode) in entries.items():
            if name != "kind":
                options[name] = self.option(vnode, f"provider.{name}", known[name][0])
        try:
            return cls(**options)  # type: ignore[arg-type]  # each value was checked against its field's Option
        except ValueError as e:  # not reached: every option was checked above; kept so no traceback escapes
            self.fail(node, f"provider ({kind}): {e}")

    def option(self, node: Node, where: str, option: Option) -> object:
        """One provider option, read as its ``Option.form`` says and checked by ``Option.problem``."""
        value: object
        match option.form:
            case "integer":
                value = self.integer(node, where, option.lo, option.hi)
            case "seconds":
                value = self.number(node, where)
            case "boolean":
                value = self.boolean(node, where)
            case "file":
                raw = self.text(node, where)
                base = Path(self.path).parent if not self.path.startswith("<") else Path(".")
                path = (base / raw) if not Path(raw).is_absolute() else Path(raw)
                if not path.is_file():
                    self.fail(node, f"{where}: no such file {str(path)!r}")
                value = str(path)
            case "text" | "address" | "url" | "region":
                value = self.text(node, where).strip()
        problem = option.problem(value)
        if problem:
            self.fail(node, f"{where}: {problem}")
        return value

    def zone(self, node: Node) -> str:
        raw = self.text(node, "zone").strip()
        if raw in ("", ".", "@"):
            self.fail(node, f"zone: must be a domain name such as 'example.com', got {raw!r}")
        zone = normalise_name(raw)
        problem = _name_problem(zone)
        if problem:
            self.fail(node, f"zone: {problem}")
        return zone

    def targets(self, node: Node) -> dict[str, tuple[Target, Node]]:
        found: dict[str, tuple[Target, Node]] = {}
        entries = self.entries(node, "targets")
        if not entries:
            self.fail(node, "targets: must define at least one target")
        for tid, (knode, vnode) in entries.items():
            if not _TARGET_ID.fullmatch(tid):
                rule = "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
                self.fail(knode, f"targets: id {tid!r} must be {rule}")
            found[tid] = (self.target(tid, vnode, f"targets.{tid}"), knode)
        return found

    def target(self, tid: str, node: Node, where: str) -> Target:
        fields = self.entries(node, where, _TARGET_KEYS, required=("addresses",))
        addresses: list[str] = []
        first_version = 0
        for i, anode in enumerate(self.items(fields["addresses"][1], f"{where}.addresses", "IP addresses")):
            at = f"{where}.addresses[{i}]"
            raw = self.text(anode, at).strip()
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError:
                self.fail(anode, f"{at}: {raw!r} is not an IP address")
            address = str(ip)
            problem = validate_address("A" if ip.version == 4 else "AAAA", address)
            if problem:
                self.fail(anode, f"{at}: {problem}")
            if address in addresses:
                self.fail(anode, f"{at}: duplicate address {address}")
            if first_version and ip.version != first_version:
                self.fail(
                    anode,
                    f"{at}: {address} is IPv{ip.version} but {addresses[0]} is IPv{first_version}; "
                    "a target holds one address family (define a separate target id for the other)",
                )
            first_version = ip.version
            addresses.append(address)
        capacity = 100
        if "capacity" in fields:
            capacity = self.integer(fields["capacity"][1], f"{where}.capacity", 1)
        check = self.check(fields["check"][1], f"{where}.check") if "check" in fields else None
        return Target(tid, tuple(addresses), capacity, check)

    def check(self, node: Node, where: str) -> HealthCheck:
        fields = self.entries(node, where, _CHECK_KEYS)
        kinds = [k for k in fields if k in ("tcp", "http")]
        if not kinds:
            self.fail(node, f"{where}: needs one of tcp ('host:port') or http ('http://...')")
        if len(kinds) > 1:
            self.fail(fields[kinds[1]][0], f"{where}: give either tcp or http, not both")
        timeout = 1.0
        if "timeout" in fields:
            tnode = fields["timeout"][1]
            timeout = self.number(tnode, f"{where}.timeout")
            if timeout <= 0:
                self.fail(tnode, f"{where}.timeout: must be more than 0 seconds, got {tnode.value}")
        if kinds[0] == "tcp":
            if "expect_status" in fields:
                self.fail(fields["expect_status"][0], f"{where}.expect_status: applies only to http checks")
            host, port = self.host_port(fields["tcp"][1], f"{where}.tcp")
            return HealthCheck("tcp", host=host, port=port, timeout=timeout)
        url = self.url(fields["http"][1], f"{where}.http")
        status = 200
        if "expect_status" in fields:
            status = self.integer(fields["expect_status"][1], f"{where}.expect_status", 100, 599)
        return HealthCheck("http", url=url, expect_status=status, timeout=timeout)

    def host_port(self, node: Node, where: str) -> tuple[str, int]:
        raw = self.text(node, where).strip()
        if "${" in raw:
            self.fail(node, f"{where}: unsubstituted placeholder in {raw!r}")
        host, sep, port_text = raw.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or any(c.isspace() for c in host):
            self.fail(node, f"{where}: must be 'host:port', got {raw!r}")
        if not port_text.isdigit():
            self.fail(node, f"{where}: port must be a number, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            self.fail(node, f"{where}: port must be within 1..65535, got {port}")
        return host, port

    def url(self, node: Node, where: str) -> str:
        raw = self.text(node, where).strip()
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(node, f"{where}: must be an http:// or https:// URL with a host, got {raw!r}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            self.fail(node, f"{where}: bad port in {raw!r}")
        return raw

    def policy_fields(self, node: Node, where: str) -> dict[str, tuple[object, Node]]:
        """Each policy key given, checked on its own (min_targets against the targets comes later)."""
        out: dict[str, tuple[object, Node]] = {}
        for key, (_, vnode) in self.entries(node, where, _POLICY_KEYS).items():
            at = f"{where}.{key}"
            value: object
            if key in ("min_targets", "rise", "fall"):
                value = self.integer(vnode, at, 1)
            elif key == "max_weight_shift":
                value = self.number(vnode, at)
                if not 0 < value <= 1:
                    self.fail(vnode, f"{at}: must be more than 0 and at most 1, got {vnode.value}")
            elif key == "fail_open":
                value = self.boolean(vnode, at)
            else:
                value = self.text(vnode, at)
                if value not in ("weighted", "all"):
                    self.fail(vnode, f"{at}: must be one of weighted, all, got {value!r}")
            out[key] = (value, vnode)
        return out

    def endpoints(
        self,
        node: Node,
        where: str,
        zone: str,
        default_ttl: tuple[int, Node] | None,
        default_policy: dict[str, tuple[object, Node]],
        targets: dict[str, tuple[Target, Node]],
        seen: dict[EndpointKey, Node],
    ) -> list[Endpoint]:
        """One entry of ``endpoints:``: one endpoint, or one per number of a ``{FIRST..LAST}`` range in its
        name, all with the entry's type, TTL, targets and policy (checked once)."""
        fields = self.entries(node, where, _ENDPOINT_KEYS, required=("name", "targets"))
        name_node = fields["name"][1]
        names = self.names(name_node, f"{where}.name", zone)
        rtype: RecordType = "A"
        if "type" in fields:
            tnode = fields["type"][1]
            raw = self.text(tnode, f"{where}.type").strip().upper()
            if raw not in ("A", "AAAA"):
                self.fail(tnode, f"{where}.type: must be A or AAAA, got {tnode.value!r}")
            rtype = cast(RecordType, raw)
        for name in names:
            key = EndpointKey(name, rtype)
            if key in seen:
                self.fail(name_node, f"{where}: duplicate endpoint {key} (first at line {_line(seen[key])})")
            seen[key] = name_node
        if "ttl" in fields:
            ttl = self.integer(fields["ttl"][1], f"{where}.ttl", MIN_TTL, MAX_TTL)
        elif default_ttl is not None:
            ttl = default_ttl[0]
        else:
            self.fail(node, f"{where}: missing required key 'ttl' (and defaults has no ttl)")
        chosen: list[Target] = []
        listed: dict[str, Node] = {}
        targets_node = fields["targets"][1]
        for i, tnode in enumerate(self.items(targets_node, f"{where}.targets", "target ids")):
            at = f"{where}.targets[{i}]"
            tid = self.text(tnode, at).strip()
            if tid in listed:
                self.fail(tnode, f"{at}: target {tid!r} is listed twice (first at line {_line(listed[tid])})")
            if tid not in targets:
                known = list(targets)
                hint = _suggest(tid, known)
                self.fail(tnode, f"{at}: target {tid!r} is not defined{hint}; defined targets: {', '.join(known)}")
            listed[tid] = tnode
            target = targets[tid][0]
            for address in target.addresses:
                problem = validate_address(rtype, address)
                if problem:
                    serves = key if len(names) == 1 else f"{names[0]}..{names[-1]} {rtype}"
                    self.fail(tnode, f"{at}: target {tid!r} cannot serve {serves}: {problem}")
            chosen.append(target)
        own = self.policy_fields(fields["policy"][1], f"{where}.policy") if "policy" in fields else {}
        merged = {**default_policy, **own}
        if "min_targets" in merged:
            wanted, mnode = cast(tuple[int, Node], merged["min_targets"])
            if wanted > len(chosen):
                if "min_targets" in own:
                    self.fail(mnode, f"{where}.policy.min_targets: {wanted} is more than its {len(chosen)} targets")
                self.fail(
                    targets_node,
                    f"{where}.targets: policy.min_targets {wanted} (from defaults, line {_line(mnode)}) "
                    f"is more than its {len(chosen)} targets",
                )
        # policy_fields checked each value's type per key; a dict of mixed values has no static type
        policy = Policy(**{k: v for k, (v, _) in merged.items()})  # type: ignore[arg-type]
        adopt = self.boolean(fields["adopt"][1], f"{where}.adopt") if "adopt" in fields else False
        chosen_targets = tuple(chosen)
        return [Endpoint(name, rtype, ttl, chosen_targets, policy, adopt) for name in names]

    def names(self, node: Node, where: str, zone: str) -> list[str]:
        """An endpoint entry's absolute names: its ``name``, or with one ``{FIRST..LAST}`` range in it, one
        name per number, zero-padded to FIRST's width when FIRST starts with 0 (``{001..250}``)."""
        raw = self.text(node, where).strip()
        found = list(_RANGE.finditer(raw))
        if not found:
            return [self.name(node, where, zone, raw)]
        if len(found) > 1:
            self.fail(node, f"{where}: {raw!r} has {len(found)} ranges; a name takes at most one {{FIRST..LAST}}")
        m = found[0]
        first, last = m.group(1), m.group(2)
        lo, hi = int(first), int(last)
        if lo > hi:
            self.fail(node, f"{where}: the range {{{first}..{last}}} counts down; write the smaller number first")
        if hi - lo + 1 > MAX_RANGE:
            self.fail(node, f"{where}: the range {{{first}..{last}}} names {hi - lo + 1:,} endpoints, more than "
                            f"{MAX_RANGE:,} in one entry")
        width = len(first) if len(first) > 1 and first.startswith("0") else 1
        numbers = [f"{n:0{width}d}" for n in range(lo, hi + 1)]
        head, tail = raw[: m.start()], raw[m.end() :]
        # The first and last names are checked in full (the last is the longest); the digits between
        # change no label's validity, so the others are the first name with other digits.
        checked = self.name(node, where, zone, head + numbers[0] + tail, raw)
        self.name(node, where, zone, head + numbers[-1] + tail, raw)
        start = len(head)
        before, after = checked[:start], checked[start + len(numbers[0]) :]
        return [before + digits + after for digits in numbers]

    def name(self, node: Node, where: str, zone: str, raw: str, written: str = "") -> str:
        """``raw``, the text of ``node`` (or one name of the range ``written``), as an absolute name in ``zone``."""
        if written:
            where = f"{where} ({raw!r} of {written!r})"
        bare_zone = zone[:-1]
        if raw == "@":
            name = zone
        elif raw.endswith("."):
            name = normalise_name(raw)
        else:
            low = raw.lower()
            if low == bare_zone or low.endswith("." + bare_zone):
                self.fail(
                    node,
                    f"{where}: {raw!r} is relative to the zone, so it means {normalise_name(low + '.' + bare_zone)}; "
                    f"write {normalise_name(low)!r} (trailing dot) or the part before the zone",
                )
            name = normalise_name(f"{low}.{bare_zone}") if raw else ""
        problem = _name_problem(name)
        if problem:
            self.fail(node, f"{where}: {problem}")
        if not in_zone(name, zone):
            self.fail(node, f"{where}: {name} is outside the zone {zone}")
        if any(label.startswith("_dnsplane") for label in name.split(".")):
            self.fail(node, f"{where}: labels starting with '_dnsplane' are reserved for dnsplane's markers")
        return name


def _name_problem(name: str) -> str | None:
    """Why an absolute lower-case name is not a usable DNS name, or None."""
    if not name or name == ".":
        return "must be a domain name, got nothing"
    if len(name) > 254:
        return f"{name} is longer than 253 characters"
    for label in name[:-1].split("."):
        if not _LABEL.fullmatch(label):
            rule = "1-63 letters, digits, '-' or '_', not starting or ending with '-'"
            return f"{name!r} has a bad label {label!r} ({rule})"
    return None


# The providers' limits for one endpoint's write, as ``fit_problem`` checks them (config sits below the
# providers and cannot import them; tests/test_config_limits.py checks these equal the providers' own).
RFC2136_MAX_MESSAGE = 65_535 - 512  # one UPDATE, room kept for the TSIG record (providers/rfc2136/provider.py)
RFC2136_MAX_RDATA = 0xFFFF  # one RR's data: the marker TXT (providers/rfc2136/wire.py)
RFC2136_MAX_RECORDS_PER_TYPE = DEFAULT_MAX_RECORDS_PER_TYPE  # BIND 9.18's default (SERVFAIL "too many records")
ROUTE53_MAX_RECORDS = 1_000  # ResourceRecord elements per change batch (providers/route53/batches.py)
ROUTE53_MAX_CHARS = 32_000  # characters of values per change batch
ROUTE53_MAX_WEIGHTED = 100  # weighted record sets of one name and type (batches.MAX_WEIGHTED)
ROUTE53_TOKEN_RESERVE = (2, 68)  # records and characters the zone's write token takes in every batch (token.py)
_MARKER_HEAD = 160  # "dnsplane g=<19 digits> d=<16> p=<12>.<8> o=<owner> r=1": 143 at most, with room to spare


@functools.lru_cache(maxsize=4096)
def _worst_content(ttl: int, targets: tuple[Target, ...]) -> tuple[tuple[str, ...], str]:
    """The distinct addresses and the record set's JSON of every target live with a 4-digit weight: the same
    for every endpoint of one TTL and target list (most endpoints of a large fleet share theirs), so kept."""
    worst = RecordSet.of(ttl, [Member(t.id, t.addresses, WEIGHT_SCALE) for t in targets])
    return tuple(worst.addresses()), json.dumps(worst.to_json(), separators=(",", ":"), ensure_ascii=True)


def fit_problem(endpoint: Endpoint, provider: ProviderConfig) -> str | None:
    """Why one write of ``endpoint`` cannot fit ``provider``'s message or batch limits, or None.

    Worst case: every target live with a 4-digit weight, and a change (the old content as large as the
    new one) in one message or change batch, as an enactor sends it.
    """
    if not isinstance(provider, Rfc2136Config | Route53Config):
        return None
    addresses, rs_json = _worst_content(endpoint.ttl, endpoint.targets)
    n = len(endpoint.targets)
    fewer = "give the endpoint fewer targets (or split it into several names)"
    if isinstance(provider, Rfc2136Config):
        limit = provider.max_records_per_type
        if len(addresses) > limit:
            return (f"{len(addresses)} distinct addresses, but the server keeps at most {limit} records of one type "
                    "at a name (BIND's max-records-per-type, 100 by default; if the server allows more, set "
                    f"provider.max_records_per_type); {fewer}")
        txt = _MARKER_HEAD + len(rs_json) + math.ceil(len(rs_json) / 255) + 1
        if txt > RFC2136_MAX_RDATA:
            return (f"its marker TXT (the record set of {n} targets) needs about {txt} bytes, more than one DNS "
                    f"record holds ({RFC2136_MAX_RDATA}); {fewer}, or shorter target ids")
        rdlen = 4 if endpoint.rtype == "A" else 16
        owners = 8 * (len(endpoint.name) + 30 + 10)  # owner names and RR headers of the prerequisites and updates
        update = 12 + len(endpoint.name) + 2 * txt + 2 * len(addresses) * (rdlen + 12) + owners
        if update > RFC2136_MAX_MESSAGE:
            return (f"a change of its {n} targets needs an UPDATE of about {update} bytes, more than one DNS "
                    f"message holds ({RFC2136_MAX_MESSAGE}); {fewer}, or shorter target ids")
    elif isinstance(provider, Route53Config):
        mname = marker_name(endpoint.key)
        if len(mname) + 1 > 255:  # octets in wire form: a length octet per label and the root's
            return (f"its marker's name {mname} is {len(mname) + 1} octets, over the 255 a DNS name may have; "
                    "shorten the name")
        if endpoint.policy.answer != "all" and n > ROUTE53_MAX_WEIGHTED:
            return (f"{n} targets, but Route 53 keeps at most {ROUTE53_MAX_WEIGHTED} weighted record sets of one "
                    f"name and type; {fewer}, or answer: all")
        quoted = len(rs_json) + rs_json.count('"')  # Route 53 shows '"' as '\"'
        strings = math.ceil(quoted / 255)
        values = 1 + math.ceil(strings / 14)  # the marker, then values of up to 3,900 characters
        records = 2 * (sum(len(set(t.addresses)) for t in endpoint.targets) + values)  # DELETE old + CREATE new
        chars = 2 * (sum(len(a) for t in endpoint.targets for a in set(t.addresses))
                     + _MARKER_HEAD + quoted + 3 * strings + 20 * values)
        max_records, max_chars = (ROUTE53_MAX_RECORDS - ROUTE53_TOKEN_RESERVE[0],
                                  ROUTE53_MAX_CHARS - ROUTE53_TOKEN_RESERVE[1])  # fmt: skip
        if records > max_records or chars > max_chars:
            return (f"a change of its {n} targets needs about {records} records and {chars} characters in one "
                    f"change batch; Route 53 allows {max_records} and {max_chars} beside the zone's write token; "
                    f"{fewer}")
    return None
