"""Pure values of dnsplane: endpoints, targets, record sets, markers, writes and their results.

Guarantees:
- every value here is immutable (frozen dataclasses, tuples) and hashable;
- a ``RecordSet`` carries its own content digest, computed once, so markers and
  plans can compare content without re-serialising it;
- ``validate_record_set`` is the single gate that every write passes (I5): it
  refuses an empty set, a bad address, a duplicate target, a TTL out of range
  or a name outside the zone, naming the offending item.

This module imports nothing that does I/O.

A plan has no value type of its own: a store keeps it as the (key, record set) changes of one
generation (``Store.publish``), and its content is compared through the record sets' digests.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import ipaddress
import re
import types
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Final, Literal, NamedTuple, NewType, TypeGuard, TypeVar

from dnsplane.errors import InvalidPlan

_Value = TypeVar("_Value")


class _Factory:
    """The default of a parameter whose field has a default factory (``quick_init``; shown as the generated
    ``__init__``'s is)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: type[_Value]) -> type[_Value]:
    """Give ``cls``, a ``@dataclass(frozen=True, slots=True)``, an ``__init__`` that fills each slot through
    the slot's own descriptor, where the generated one calls ``object.__setattr__`` per field to get past the
    frozen ``__setattr__`` (a name lookup and a generic set each: about 145 ns a field). The same parameters,
    defaults, default factories and ``__post_init__``, the same instance, as frozen after; built in about
    half the time. The simulator and the explorer build a few of these per step (events, commands,
    markers, writes). A class with init-only or keyword-only fields keeps its generated ``__init__``."""
    generated = inspect.signature(cls.__init__)
    names = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    if list(generated.parameters)[1:] != names or any(
            p.kind is not p.POSITIONAL_OR_KEYWORD for p in generated.parameters.values()):
        return cls
    env: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, body = ["self"], []
    for f in fields(cls):  # type: ignore[arg-type]
        n, slot = f.name, cls.__dict__.get(f.name)
        if type(slot) is not types.MemberDescriptorType:
            return cls
        env[f"_set_{n}"] = slot.__set__
        if f.default_factory is not MISSING:
            env[f"_make_{n}"] = f.default_factory
            params += [f"{n}=_FACTORY"] if f.init else []
            value = f"_make_{n}() if {n} is _FACTORY else {n}" if f.init else f"_make_{n}()"
        elif f.default is not MISSING:
            env[f"_default_{n}"] = f.default
            params += [f"{n}=_default_{n}"] if f.init else []
            value = n if f.init else f"_default_{n}"
        elif f.init:
            params.append(n)
            value = n
        else:
            continue  # no default: ``__post_init__`` sets it, as after the generated ``__init__``
        body.append(f"_set_{n}(self, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    namespace: dict[str, Any] = {}
    exec(f"def __init__({', '.join(params)}):\n    " + "\n    ".join(body or ["pass"]), env, namespace)
    init = namespace["__init__"]
    init.__qualname__, init.__module__ = f"{cls.__qualname__}.__init__", cls.__module__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

Generation = NewType("Generation", int)
ZoneName = NewType("ZoneName", str)
RecordType = Literal["A", "AAAA"]

NO_GENERATION = Generation(0)
EVERY_GENERATION = Generation(2**62)  # an upper bound above any generation a store hands out
# The largest generation dnsplane hands out or believes. Stores hold generations as signed 64-bit
# integers (SQLite: at most 2**63 - 1); a hand-written marker ``g=9223372036854775807`` taken as
# the head made every later publish overflow. 2**53 is far inside that range (and exact in a
# double, for JSON readers): at a million publishes a second it lasts 285 years. A marker naming a
# generation above it, below 0, or not a decimal number is corrupt (``Marker.from_text`` refuses
# it, ``generation_in_range`` says so of a marker a provider stores as columns): the verifier
# repairs it, no store head ever follows it (``Store.advance_head`` refuses to pass it).
MAX_GENERATION = Generation(2**53)
_GENERATION_TEXT = re.compile(r"[0-9]{1,16}")  # 2**53 has 16 digits; int() would also take "+5", " 5", "1_0"
MIN_TTL = 1
MAX_TTL = 86_400
WEIGHT_SCALE = 1000  # weights of one endpoint are integers summing to about this


def generation_in_range(g: object) -> bool:
    """Whether ``g`` is a generation dnsplane could have written: an int in [0, MAX_GENERATION]."""
    return type(g) is int and 0 <= g <= MAX_GENERATION


def parse_generation(text: str) -> Generation | None:
    """The generation written as ``text`` (decimal digits only), or None when it is garbage or out
    of range (negative, above ``MAX_GENERATION``)."""
    if not _GENERATION_TEXT.fullmatch(text):
        return None
    g = int(text)
    return Generation(g) if g <= MAX_GENERATION else None


def normalise_name(name: str) -> str:
    """Lower-case, absolute (trailing dot) form of a DNS name."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class EndpointKey(NamedTuple):
    """Identity of an endpoint: absolute lower-case name and record type."""

    name: str
    rtype: str

    def __str__(self) -> str:
        return f"{self.name} {self.rtype}"

    @classmethod
    def parse(cls, text: str) -> EndpointKey:
        """``"api.demo.test A"`` or ``"api.demo.test."`` (type A by default). ``ValueError`` for an empty text."""
        parts = text.split()
        if not parts:
            raise ValueError("an empty endpoint name")
        rtype = parts[1].upper() if len(parts) > 1 else "A"
        return cls(normalise_name(parts[0]), rtype)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How a target's health is observed: a TCP connect or an HTTP GET."""

    kind: Literal["tcp", "http"]
    host: str = ""
    port: int = 0
    url: str = ""
    expect_status: int = 200
    timeout: float = 1.0

    def describe(self) -> str:
        return f"tcp {self.host}:{self.port}" if self.kind == "tcp" else f"http {self.url}"


@dataclass(frozen=True, slots=True)
class Target:
    """A load balancer: an id, its addresses, its capacity and its health check."""

    id: str
    addresses: tuple[str, ...]
    capacity: int = 100
    check: HealthCheck | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class HealthRecord:
    """The health the planner last acted on for one target, as the store keeps it across restarts."""

    healthy: bool
    since: float  # when the planner set this state (the observation's ``now``)


@dataclass(frozen=True, slots=True)
class Policy:
    """Guards the planner keeps for one endpoint (DESIGN.md point 4)."""

    min_targets: int = 1
    max_weight_shift: float = 0.5  # share of total weight one generation may move
    fail_open: bool = True
    rise: int = 2  # consecutive good checks before a target is healthy again
    fall: int = 2  # consecutive bad checks before a target is unhealthy
    answer: Literal["weighted", "all"] = "weighted"


@dataclass(frozen=True, slots=True)
class ZoneGuard:
    """The zone-wide guard (a fleet file's ``guard:``; octoDNS's 30 % rule): a plan that would change
    more of the endpoints already published than ``max_share`` of them, or more than ``max_count``, is
    held until an operator confirms it (``dnsplane confirm GENERATION``) or, with ``release_after``, until
    it has been held that many seconds. Zones with fewer than ``min_existing`` endpoints published are not
    guarded (a first plan, a small zone). New endpoints never count: only changes to published ones."""

    max_share: float | None = None  # 0 < share <= 1
    max_count: int | None = None
    min_existing: int = 10
    release_after: float | None = None

    def trips(self, changed: int, existing: int) -> bool:
        """Whether changing ``changed`` of ``existing`` published endpoints at once is held."""
        if existing < self.min_existing or changed == 0:
            return False
        if self.max_count is not None and changed > self.max_count:
            return True
        return self.max_share is not None and changed > self.max_share * existing

    def describe(self) -> str:
        limits = [f"{self.max_share:.0%} of the endpoints" if self.max_share is not None else "",
                  f"{self.max_count} endpoints" if self.max_count is not None else ""]
        return " or ".join(x for x in limits if x)


@dataclass(frozen=True, slots=True)
class Dial:
    """A manual dial an operator set (``dnsplane pin`` / ``dnsplane drain``), which the planner obeys
    until ``until`` (None: no expiry, said so when it was set) or until it is lifted.

    - ``pin``: ``subject`` is an endpoint key (``EndpointKey.__str__``); the endpoint is served from
      ``targets`` only (health still takes a dead one out, never below the endpoint's floor);
    - ``drain``: ``subject`` is a target id; it leaves every endpoint it is in, except where that would
      leave fewer healthy targets than the floor (``min_targets``, and never none), where it stays."""

    kind: Literal["pin", "drain"]
    subject: str
    targets: tuple[str, ...]  # a pin's targets; () for a drain
    at: float
    by: str
    reason: str
    until: float | None

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def describe(self) -> str:
        if self.kind == "pin":
            return f"pin of {self.subject} to {', '.join(self.targets)}"
        return f"drain of {self.subject}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A DNS name and type that dnsplane owns, with its targets and policy.

    ``adopt``: the fleet file says ``adopt: true``: records found there without a dnsplane marker,
    or under another installation's marker, may be overwritten (I7); otherwise they are foreign."""

    name: str
    rtype: RecordType
    ttl: int
    targets: tuple[Target, ...]
    policy: Policy = field(default_factory=Policy)
    adopt: bool = False

    @property
    def key(self) -> EndpointKey:
        return EndpointKey(self.name, self.rtype)


@quick_init
@dataclass(frozen=True, slots=True)
class Member:
    """One weighted target inside a record set: its id, addresses and weight."""

    target_id: str
    addresses: tuple[str, ...]
    weight: int


@quick_init
@dataclass(frozen=True, slots=True)
class RecordSet:
    """What an endpoint resolves to. Members are sorted by target id.

    ``digest`` identifies the content (TTL, members, weights, addresses); two
    record sets with the same digest serve the same answers.
    """

    ttl: int
    members: tuple[Member, ...]
    answer: Literal["weighted", "all"] = "weighted"
    digest: str = field(init=False, compare=False)
    # the members with weight > 0 (``live_members``), kept: every writer, reader and check asks; the
    # members tuple itself when all are live, as they mostly are (no second tuple kept)
    live: tuple[Member, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", content_digest(self.ttl, self.members, self.answer))
        members = self.members
        live = members if all(m.weight > 0 for m in members) else tuple(m for m in members if m.weight > 0)
        object.__setattr__(self, "live", live)

    def __hash__(self) -> int:
        # Equal record sets have equal digests; a str caches its hash, so hashing a record set (and
        # every plan, write and marker check that holds one) does not walk its members again.
        return hash(self.digest)

    @classmethod
    def of(
        cls, ttl: int, members: list[Member] | tuple[Member, ...], answer: Literal["weighted", "all"] = "weighted"
    ) -> RecordSet:
        return cls(ttl, tuple(sorted(members, key=lambda m: m.target_id)), answer)

    def addresses(self) -> list[str]:
        """Every address of every member with weight > 0, in member order, deduplicated."""
        seen: dict[str, None] = {}
        for m in self.members:
            if m.weight > 0:
                for a in m.addresses:
                    seen[a] = None
        return list(seen)

    def live_members(self) -> tuple[Member, ...]:
        return self.live

    def to_json(self) -> dict[str, object]:
        return {
            "ttl": self.ttl,
            "answer": self.answer,
            "members": [[m.target_id, list(m.addresses), m.weight] for m in self.members],
        }

    @classmethod
    def from_json(cls, data: object) -> RecordSet:
        """The record set of JSON of ``to_json``'s shape; ``ValueError`` for any other JSON value (a marker
        TXT is text from the zone, perhaps written by hand: ``1e400`` where the TTL goes, a string for the
        addresses, an object for a member are refused here, never coerced)."""
        if not isinstance(data, dict):
            raise ValueError("a record set is a JSON object")
        ttl, answer, raw = data.get("ttl"), data.get("answer", "weighted"), data.get("members")
        if not _json_int(ttl) or answer not in ("weighted", "all") or not isinstance(raw, list):
            raise ValueError("a record set needs an integer ttl, a list of members and answer weighted or all")
        members = []
        for m in raw:
            if not (isinstance(m, list) and len(m) == 3 and isinstance(m[0], str) and isinstance(m[1], list)
                    and all(isinstance(a, str) for a in m[1]) and _json_int(m[2])):
                raise ValueError("a member is [target id, [address, ...], integer weight]")
            members.append(Member(m[0], tuple(m[1]), m[2]))
        return cls(ttl, tuple(members), "all" if answer == "all" else "weighted")


def _json_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def content_digest(ttl: int, members: tuple[Member, ...], answer: str) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{ttl}|{answer}".encode())
    for m in members:
        h.update(f"|{m.target_id}={m.weight}:{','.join(m.addresses)}".encode())
    return h.hexdigest()


@quick_init
@dataclass(frozen=True, slots=True)
class Marker:
    """What a provider holds beside an endpoint's records, written in the same atomic change.

    ``generation`` is the plan generation whose content the records hold;
    ``digest`` is that content's digest; ``prev`` is the chain token of the marker this one
    replaced (``chain_token``): every marker dnsplane writes names its predecessor, so the marker
    carries the endpoint's write history. A human who sets ``g=`` back to an older generation keeps
    the rest of the text, and the result equals no marker a delayed writer read before the endpoint
    moved on: that writer's compare-and-swap fails (chaos 12537). ``prev`` is empty in a
    marker written before tokens existed and in the legacy protocol's unconditional writes.
    What still passes for an old marker: one restored byte for byte, ``p=`` included, over the
    records it stood beside (see docs/design.md, "Markers").

    ``prev`` is ``<chain>.<seal>``: the seal is a hash of this marker's own generation, digest and
    chain, so a marker whose ``g=`` or ``d=`` was edited by hand, the rest kept, no longer matches
    its seal (``sealed``); enactors leave such an endpoint to the verifier, which repairs it
    (chaos 13470: an enactor holding an older plan read a marker lowered by hand over content
    A -> B -> A had made equal to that generation's again, and would have written its older plan).

    ``owner`` is the owner id of the installation that wrote the marker (``o=``, invariant I7):
    an installation writes only endpoints that are empty or carry its own id (or that the fleet
    file adopts). The seal covers it, so a hand edit of ``o=`` breaks the seal. A marker written
    before owner ids existed has none (``""``): its installation reads it as its own, once, and
    the verifier rewrites it with its id (see docs/design.md, "Ownership").

    ``released`` (`` r=1``, last in the text) says the installation of ``owner`` let the endpoint go:
    it left that installation's fleet, and its records stay as they were, no longer managed, verified
    or recreated (I7). Written once, by the verifier, with the same generation, digest and records
    ("release"); a person or another installation reading the zone can tell a released name from a
    managed one. The seal covers it (a hand edit of ``r=1`` breaks the seal); a marker without it
    reads, hashes and seals exactly as before the field existed. A released marker of this
    installation is still its own: when the endpoint comes back to the fleet, it is taken back.

    Equality (``==``, what a compare-and-swap compares) covers every field; ``same_content``
    compares generation, digest, owner, ``released`` and whether the seal holds (what "already
    applied" means, I6: a rewrite that only adds the owner id, only marks the endpoint released, or
    only restores a broken seal, is a real write).
    """

    generation: Generation
    digest: str
    prev: str = ""
    owner: str = ""
    released: bool = False

    @classmethod
    def after(cls, replaced: Marker | None, generation: Generation, digest: str, owner: str = "",
              released: bool = False) -> Marker:
        """The marker a write of ``generation`` (content ``digest``) by ``owner`` puts over ``replaced``
        (``released``: marking the endpoint released).

        Deterministic: two writers of one owner that write the same generation over the same marker
        write the same marker, so the one that comes second finds its write already applied.
        """
        chain = chain_token(replaced)
        return cls(generation, digest, f"{chain}.{_seal(generation, digest, chain, owner, released)}", owner,
                   released)

    def sealed(self) -> bool:
        """Whether the marker is as dnsplane wrote it: its seal matches its generation, digest, chain,
        owner and released state. A marker without ``p=`` (written before chain tokens) has nothing
        to check: True."""
        if not self.prev:
            return True
        chain, dot, seal = self.prev.partition(".")
        return bool(dot) and seal == _seal(self.generation, self.digest, chain, self.owner, self.released)

    def same_content(self, other: Marker | None) -> bool:
        """Whether ``other`` names the same generation, content, owner and released state, whatever
        marker each replaced. A marker whose seal is broken (``g=`` or ``d=`` edited by hand) is never
        the same as a sealed one: writing a sealed marker over it is a real write (else the verifier's
        repair of an edited marker that still names the plan's content would be "already applied"
        forever, the marker never repaired)."""
        return (other is not None and self.generation == other.generation and self.digest == other.digest
                and self.owner == other.owner and self.released == other.released
                and self.sealed() == other.sealed())

    def to_text(self) -> str:
        text = f"dnsplane g={self.generation} d={self.digest}"
        if self.prev:
            text = f"{text} p={self.prev}"
        if self.owner:
            text = f"{text} o={self.owner}"
        return f"{text} r=1" if self.released else text

    @classmethod
    def from_text(cls, text: str) -> Marker | None:
        """Parse a marker TXT value (``dnsplane g=<g> d=<digest>``, then optionally `` p=<prev>``,
        then optionally `` o=<owner>``, then optionally `` r=1``); None when it is not a dnsplane marker."""
        parts = text.strip('"').split()
        if not 3 <= len(parts) <= 6 or parts[0] != "dnsplane":
            return None
        g = parse_generation(parts[1].removeprefix("g="))
        if g is None:
            return None  # garbage, negative or past MAX_GENERATION: a corrupt marker, never a head
        rest = parts[3:]
        prev = owner = ""
        if rest and rest[0].startswith("p="):
            prev = rest.pop(0).removeprefix("p=")
        if rest and rest[0].startswith("o="):
            owner = rest.pop(0).removeprefix("o=")
        released = bool(rest) and rest[0] == "r=1"
        if released:
            rest.pop(0)
        if rest:
            return None
        return cls(Generation(g), parts[2].removeprefix("d="), prev, owner, released)


NO_MARKER_TOKEN = "none"  # what a write that replaced no marker hashes instead (a first write)


def chain_token(replaced: Marker | None) -> str:
    """A short hash (blake2b, 6 bytes: 12 hex digits) of the full text of ``replaced``."""
    text = replaced.to_text() if replaced is not None else NO_MARKER_TOKEN
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


CORRUPT_GENERATION = Generation(-1)  # the generation of a corrupt marker as ``read_marker`` reads it


def read_marker(text: str) -> Marker | None:
    """A marker TXT's text, as the providers that keep markers as text (RFC 2136, Route 53) read it:
    the marker; None when it is no marker at all (not ``dnsplane g=...``); and for a marker whose
    ``g=`` is out of range or garbage (a hand edit, ``Marker.from_text`` refuses it) a corrupt
    marker: generation ``CORRUPT_GENERATION``, which no writer uses (``generation_in_range`` is
    False: the enactors leave it, the verifier repairs it, no head follows it), its digest a hash
    of the text, so two reads of one TXT give equal markers (the compare-and-swap's ``expect``)
    and another hand edit a different one. Read as no marker, its records would look foreign (I7)
    and never be repaired. Its ``o=`` is kept, whatever else the text holds: read without it, another
    installation's marker with a garbled ``g=`` would pass for one written before owner ids, that is for
    this installation's, and its verifier would repair over it (I7)."""
    marker = Marker.from_text(text)
    if marker is not None:
        return marker
    parts = text.strip('"').split()
    if len(parts) >= 2 and parts[0] == "dnsplane" and parts[1].startswith("g="):
        owner = next((p.removeprefix("o=") for p in parts[2:] if p.startswith("o=")), "")
        return corrupt_marker(text, owner)
    return None


def corrupt_marker(source: str, owner: str = "") -> Marker:
    """How every provider reads a marker whose generation is out of range (a person wrote it: dnsplane
    never does), whether it keeps markers as text (``read_marker``) or as columns (the embedded and the
    memory providers): generation ``CORRUPT_GENERATION``, its digest a hash of what it was read from
    (``source``: two reads of one marker equal, for the compare-and-swap's ``expect``; another edit
    different; never the records' digest), no ``p=``, its owner kept. So no marker out of range reaches
    the protocol: ``enactor.decide`` needs no row of its own for one (issue 13's eighth round)."""
    return Marker(CORRUPT_GENERATION, hashlib.blake2b(source.encode(), digest_size=8).hexdigest(), "", owner)


# A marker is checked at every read of it (``sealed``; the verifier reads the same markers round after round):
# hash it once. One cache: a seed seals about 60 distinct markers (us-east-1; chaos about 40) and reads them
# within that seed, so 16,384 entries keep hundreds of seeds' worth and a larger cache only keeps dead ones
@functools.lru_cache(maxsize=1 << 14)
def _seal(generation: int, digest: str, chain: str, owner: str = "", released: bool = False) -> str:
    """blake2b, 4 bytes (8 hex digits), of a marker's generation, digest, chain token, owner id and
    released state (a marker without an owner, or not released, hashes what it hashed before that
    field existed)."""
    text = f"{generation}|{digest}|{chain}|{owner}" if owner else f"{generation}|{digest}|{chain}"
    if released:
        text += "|released"
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


OWNER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # an owner id: one token of a marker's text


def owner_problem(owner: str) -> str | None:
    """Why ``owner`` cannot be an owner id, or None."""
    if not OWNER_ID.fullmatch(owner):
        return (f"owner id {owner!r} must be 1-63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit")
    return None


def zone_order(key: EndpointKey) -> tuple[tuple[str, ...], str]:
    """Where an endpoint sits in a zone listed in DNS order (labels compared from the root, then the
    type), as Route 53 lists record sets: endpoints next to each other here are read in one page."""
    return tuple(reversed(key.name.rstrip(".").split("."))), key.rtype


def marker_name(key: EndpointKey) -> str:
    """The DNS name of the marker TXT of an endpoint (one per name and type)."""
    return f"_dnsplane-{key.rtype.lower()}.{key.name}"


@quick_init
@dataclass(frozen=True, slots=True)
class Observed:
    """What a provider currently holds for an endpoint (either part may be missing)."""

    records: RecordSet | None
    marker: Marker | None


@quick_init
@dataclass(frozen=True, slots=True)
class Write:
    """Replace an endpoint's records and marker, if and only if its marker is ``expect`` and, when
    its records are ``expect_records``: the endpoint as the writer saw it, both halves.

    The marker alone fences dnsplane's writers (every write moves it), but not a human: a marker
    deleted by hand makes "no marker" true again for a delayed first write (chaos 1412, 5315), and
    a marker set back by hand to an exact older value makes a delayed write's expected marker true
    again over newer records. Either way the old write would land and serve an older plan (I2).
    With the records in the precondition it fails: the records moved on.
    ``expect_records`` None means no records (a first write); a repair names the records it saw.

    When the records came back too (A -> B -> A) and a human then set the marker's generation
    back to the one a delayed writer read (chaos 12537), the records match; the marker's ``prev``
    does not: it names the marker the endpoint's last write replaced, not the one the delayed
    writer saw replaced (``Marker.prev``). The precondition compares whole markers. (Chaos 13470,
    open: the refused writer re-reads, and the lowered marker looks like one it may write over.)

    ``token``: the zone's write token (``Provider.write_token``) as the writer read it just before the
    store's fence (``WriteBatch``). Such a write is made only if no automated write reached the zone
    since the token was read (the provider's token is still ``token``, or only this ``apply``'s own
    earlier changes moved it); else it comes back ``Conflict``. ``None``: not conditional on it.
    """

    key: EndpointKey
    expect: Marker | None
    records: RecordSet
    marker: Marker
    expect_records: RecordSet | None = None
    token: str | None = None

    def holds_on(self, marker: Marker | None, records: RecordSet | None) -> bool:
        """Whether the precondition holds on an endpoint that has ``marker`` and ``records``."""
        return marker == self.expect and records == self.expect_records

    def verdict(self, marker: Marker | None, records: RecordSet | None) -> Verdict:
        """What a provider does with this write on an endpoint that holds ``marker`` and ``records``
        (every provider decides with this, one write at a time, in batch order)::

            endpoint holds                                  verdict
            the write's records and marker (same_content)   APPLIED   I6: nothing sent
            else what the writer read (holds_on)            WRITE     send it
            else                                            CONFLICT  nothing sent

        "Already applied" comes first: a writer of the same generation that read another predecessor
        finds its write done. A current marker whose seal is broken is never the same content."""
        if self.marker.same_content(marker) and records == self.records:
            return APPLIED
        # holds_on, inlined: the simulator decides every write of its memory provider here
        return WRITE if marker == self.expect and records == self.expect_records else CONFLICT


class Verdict(enum.Enum):
    """A provider's decision on one ``Write`` (``Write.verdict``); match it with ``assert_never``."""

    APPLIED = "applied"  # the endpoint already holds the write (I6): ``Applied(written=False)``, nothing sent
    WRITE = "write"  # the precondition holds: write it (``Applied``, or ``Rejected`` if the provider refuses)
    CONFLICT = "conflict"  # the precondition fails: ``Conflict(current marker)``, nothing sent


# The members as module names, for hot paths: on Python 3.11 ``Verdict.APPLIED`` costs about four global
# lookups (enum class attribute access), and the type checker narrows ``v is APPLIED`` the same way.
APPLIED: Final = Verdict.APPLIED
WRITE: Final = Verdict.WRITE
CONFLICT: Final = Verdict.CONFLICT


@quick_init
@dataclass(frozen=True, slots=True)
class Applied:
    """The endpoint now holds the write's records and marker; ``written`` is False when it
    already held them and nothing was sent (I6)."""

    key: EndpointKey
    written: bool = True


@quick_init
@dataclass(frozen=True, slots=True)
class Conflict:
    """The precondition failed; ``current`` is the marker found instead. ``newer``: not sent, because
    a plan newer than the write changed the endpoint since the writer read the store (the store's
    fence, ``WriteBatch.fence``)."""

    key: EndpointKey
    current: Marker | None
    newer: Generation | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Rejected:
    """The provider refused THIS endpoint's write for a reason retrying will not fix (the write does
    not fit one provider message or change batch, a CNAME at the name makes the server ignore the
    records, a prerequisite that keeps failing although the endpoint reads unchanged...). Nothing was
    written for it: its records and marker are as before. Every other write of the same ``apply``
    is decided on its own (a provider narrows a refused batch to the endpoints at fault). ``reason``
    says what is wrong and what to do, for the journal and ``dnsplane status``."""

    key: EndpointKey
    reason: str


WriteResult = Applied | Conflict | Rejected


@quick_init
@dataclass(frozen=True, slots=True)
class Desired:
    """The content an endpoint should hold, and the generation that set it."""

    generation: Generation
    records: RecordSet


@functools.lru_cache(maxsize=1 << 16)
def validate_address(rtype: str, address: str) -> str | None:
    """Return an error message, or None when ``address`` fits ``rtype``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if rtype == "A" and ip.version != 4:
        return f"{address} is not an IPv4 address (endpoint type A)"
    if rtype == "AAAA" and ip.version != 6:
        return f"{address} is not an IPv6 address (endpoint type AAAA)"
    if ip.is_unspecified or ip.is_multicast:
        return f"{address} cannot be served as a record"
    return None


def validate_record_set(key: EndpointKey, rs: RecordSet, zone: str) -> None:
    """Refuse a record set that must never be written (I5). Raises ``InvalidPlan``."""
    if key.rtype not in ("A", "AAAA"):
        raise InvalidPlan(endpoint=str(key), reason=f"type {key.rtype} is not managed")
    if not in_zone(key.name, zone):
        raise InvalidPlan(endpoint=str(key), reason=f"name is outside the zone {zone}")
    if not (MIN_TTL <= rs.ttl <= MAX_TTL):
        raise InvalidPlan(endpoint=str(key), reason=f"TTL {rs.ttl} is outside {MIN_TTL}..{MAX_TTL}")
    if not rs.live_members():
        raise InvalidPlan(endpoint=str(key), reason="empty record set (no target with weight > 0)")
    if (key.rtype, rs.digest) in _VALID_MEMBERS:
        return
    seen: set[str] = set()
    for m in rs.members:
        if m.target_id in seen:
            raise InvalidPlan(endpoint=str(key), reason=f"duplicate target {m.target_id}")
        seen.add(m.target_id)
        if m.weight < 0:
            raise InvalidPlan(endpoint=str(key), reason=f"target {m.target_id} has negative weight {m.weight}")
        if not m.addresses:
            raise InvalidPlan(endpoint=str(key), reason=f"target {m.target_id} has no address")
        for a in m.addresses:
            err = validate_address(key.rtype, a)
            if err:
                raise InvalidPlan(endpoint=str(key), reason=f"target {m.target_id}: {err}")
    if len(_VALID_MEMBERS) > 1 << 18:
        _VALID_MEMBERS.clear()
    _VALID_MEMBERS.add((key.rtype, rs.digest))


# Record set contents (by type and digest) already found valid: the planner, the enactor and
# the provider each validate the same set, and a fleet repeats the same sets across generations.
_VALID_MEMBERS: set[tuple[str, str]] = set()
