"""The zone preflight ``dnsplane up`` runs before it starts any actor.

It does two things, in this order:

1. **Refuses a permanent misconfiguration** with a ``Permanent`` error whose message says what
   to do (``dnsplane up`` prints it and exits 2, no traceback, no "managing" banner):

   | check                                             | failure                                  |
   |---------------------------------------------------|------------------------------------------|
   | ``store.sqlite`` (and ``dns.sqlite``) quick_check | damaged file (``DamagedDataFile``)       |
   | rfc2136: TSIG-signed SOA query for the zone       | TSIG BADKEY/BADSIG/BADTIME: wrong key;   |
   |                                                   | REFUSED/NOTAUTH/NXDOMAIN/no SOA/no AA:   |
   |                                                   | the zone is not served there             |
   | rfc2136: one TSIG-signed AXFR                     | refused: ``allow-transfer`` missing      |
   | rfc2136: a no-op UPDATE (below)                   | REFUSED/NOTAUTH/NOTIMP: updates refused  |

   The no-op UPDATE deletes one TXT record that cannot exist — ``"dnsplane-preflight <random
   nonce>"`` at the marker name of the fleet's first endpoint — so it changes nothing (RFC 2136
   §2.5.4: an RR to delete that is not there is silently ignored; BIND then bumps no serial), but
   the server must still decide whether the key may update TXT at that name (allow-update, or the
   update-policy grant). A failing prerequisite alone would not do: RFC 2136 §3.3 checks
   permissions after the prerequisites. The same message deletes, at the name of the first endpoint
   of each type, that type's unspecified address (``0.0.0.0``, ``::``: I5 never writes them; the
   AXFR, read first, shows none there), so a policy that grants TXT but not A or AAAA is refused
   too (every write would otherwise be refused, and every endpoint quarantined, for good); and a
   TXT that cannot exist at the zone's write token (``_dnsplane-token.<zone>``, which every write
   replaces: ``providers/rfc2136/token.py``), so a policy that does not grant it is refused as well.
   A server that cannot be reached (connection refused, timeout, SERVFAIL) is not permanent: it
   raises ``ProviderUnavailable`` and ``dnsplane up`` retries the preflight, saying so, until it
   passes or is stopped — the server may be starting with us; nothing could be written anyway.

2. **Reports** (never changes) what in the zone would defeat dnsplane at an endpoint's name, each
   ``Finding`` with what to do: a wildcard at an ancestor (its answers stand for the endpoint and
   its marker name wherever they have no records of their own), a CNAME at the name or its marker
   name, a DNAME at or above the name, a delegation (NS below the apex) at or above the name, and
   foreign records: records of the endpoint's type with no dnsplane marker beside them (the
   zone's own ``ns1`` glue is named as such). rfc2136 reads the zone with the same AXFR; the
   embedded provider reads its database (only foreign records can occur there); Route 53's zone is not
   read here.

Route 53 (``providers/route53/preflight``): the hosted zone's name is the fleet's zone, Route 53 can be
reached with the credentials found, and they may read and change the zone (a change batch that deletes
nothing); each failure is ``Permanent`` (exit 2), Route 53 busy is ``ProviderUnavailable`` (retried).

Limits: the UPDATE probe proves the key may change the marker TXT and the records of one endpoint
of each type and the write token, not every name a narrow ``update-policy`` might leave out (that shows at the first
write: the endpoint is quarantined and shown); the report is a snapshot at start, not kept up to date.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import dns.xfr

from dnsplane.config import Fleet
from dnsplane.errors import Permanent, ProviderUnavailable
from dnsplane.model import EndpointKey, marker_name, normalise_name
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.base import Provider
from dnsplane.providers.rfc2136.token import token_name

TSIG_ERRORS = (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadKey,
               dns.message.UnknownTSIGKey)
NETWORK_ERRORS = (OSError, EOFError, dns.exception.Timeout)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing in the zone that would defeat dnsplane at an endpoint, and what to do about it."""

    kind: str  # wildcard | cname | dname | delegation | foreign
    endpoint: str  # the endpoint key, "api.demo.test. A"
    name: str  # the owner name of the records at fault
    detail: str
    todo: str

    def text(self) -> str:
        return f"{self.endpoint}: {self.detail}; {self.todo}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "endpoint": self.endpoint, "name": self.name, "detail": self.detail,
                "todo": self.todo}


# ------------------------------------------------------------------ the report (pure)


Zone = dict[str, dict[str, list[str]]]  # owner name (absolute, lower case) -> rtype -> rdata texts


def zone_of(rrs: Iterable[tuple[str, str, str]]) -> Zone:
    zone: Zone = {}
    for name, rtype, rdata in rrs:
        zone.setdefault(name.lower(), {}).setdefault(rtype.upper(), []).append(rdata)
    return zone


def _ancestors(name: str, apex: str) -> list[str]:
    """The names strictly above ``name`` down to and including the apex, nearest first."""
    out = []
    while name != apex and name.endswith("." + apex):
        name = name.split(".", 1)[1]
        out.append(name)
    return out


def analyse(apex: str, endpoints: Sequence[EndpointKey], zone: Zone) -> list[Finding]:
    """What in ``zone`` covers or occupies each endpoint's name (see the module docstring)."""
    apex = apex.lower()
    ns_targets = {r.lower() for rrs in zone.values() for r in rrs.get("NS", ())}
    found: dict[tuple[str, str, str], Finding] = {}

    def add(kind: str, key: EndpointKey, name: str, detail: str, todo: str) -> None:
        found.setdefault((kind, str(key), name), Finding(kind, str(key), name, detail, todo))

    for key in endpoints:
        name, marker = key.name.lower(), marker_name(key).lower()
        above = _ancestors(name, apex)
        for parent in above:
            wildcard = f"*.{parent}"
            if wildcard in zone:
                types = ", ".join(sorted(zone[wildcard]))
                add("wildcard", key, wildcard,
                    f"the wildcard {wildcard} ({types}) answers for {name} and its marker name {marker} "
                    "wherever they have no records of their own, so the verifier sees the wildcard's answers",
                    "remove the wildcard, or move it below a label that covers no endpoint name")
        for at in (name, marker):
            if "CNAME" in zone.get(at, {}):
                add("cname", key, at,
                    f"{at} is a CNAME (to {zone[at]['CNAME'][0]}); the server ignores records added beside it, "
                    "so the endpoint would never resolve to its addresses",
                    f"delete the CNAME at {at}, or remove the endpoint from the fleet file")
        for at in (name, *above):
            if "DNAME" in zone.get(at, {}):
                add("dname", key, at,
                    f"the DNAME at {at} (to {zone[at]['DNAME'][0]}) redirects "
                    f"{'the marker name ' + marker if at == name else name}",
                    f"delete the DNAME at {at}, or remove the endpoint from the fleet file")
            if at != apex and "NS" in zone.get(at, {}):
                add("delegation", key, at,
                    f"{at} is delegated (NS {', '.join(zone[at]['NS'])}): {name} lies in that child zone and "
                    "records written here are not served",
                    f"manage {name} in the child zone (its own fleet file), or remove the delegation")
        records = zone.get(name, {}).get(key.rtype)
        markers = [t for t in zone.get(marker, {}).get("TXT", ()) if t.strip('"').startswith("dnsplane ")]
        if records and not markers:
            glue = name in ns_targets
            add("foreign", key, name,
                f"{name} {key.rtype} holds records without a dnsplane marker ({', '.join(sorted(records))})"
                + ("; it is a name server's address (NS glue)" if glue else ""),
                "remove the endpoint from the fleet file: managing it would move the zone's name server"
                if glue else
                "they are not dnsplane's and are left alone: delete them by hand, or mark the endpoint "
                "`adopt: true` in the fleet file to let dnsplane take them over")
    return list(found.values())


# ------------------------------------------------------------------ rfc2136


@dataclass(frozen=True, slots=True)
class Server:
    """Where an RFC 2136 zone is served, and the key to speak to it with."""

    zone: str
    host: str
    port: int
    key: dns.tsig.Key
    timeout: float
    key_file: str = ""

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def key_label(self) -> str:
        return self.key.name.to_text().rstrip(".")


def server_of(fleet: Fleet) -> Server:
    from dnsplane.providers.rfc2136.keys import parse_key_file

    cfg = fleet.provider
    assert isinstance(cfg, Rfc2136Config), f"server_of needs an rfc2136 fleet, not {cfg.kind}"
    if cfg.key_file is None:
        raise Permanent(f"{fleet.source}: the rfc2136 provider needs key_file (a BIND key file)")
    tsig = parse_key_file(cfg.key_file, cfg.key_name)
    key = dns.tsig.Key(tsig.name, tsig.secret, tsig.algorithm)
    return Server(fleet.zone, cfg.server, cfg.port, key, cfg.timeout, cfg.key_file)


def _key_problem(s: Server, exc: Exception, doing: str) -> Permanent:
    if isinstance(exc, dns.tsig.PeerBadTime):
        return Permanent(f"{doing} at {s.where}: TSIG BADTIME: the clocks of this host and the server differ; "
                         "fix NTP on both")
    if isinstance(exc, dns.tsig.PeerBadKey):
        reason = "BADKEY: the server has no key of that name and algorithm"
    elif isinstance(exc, dns.tsig.PeerBadSignature):
        reason = "BADSIG: the server's secret for that key differs"
    else:
        reason = f"{type(exc).__name__}: the response's signature does not verify with our secret"
    return Permanent(
        f"{doing} at {s.where}: TSIG key {s.key_label} rejected ({reason}). Compare the key in {s.key_file} "
        f"(name, algorithm {s.key.algorithm.to_text().rstrip('.')}, secret) with the key in the server's "
        f"configuration; the zone {s.zone} cannot be read or written until they match")


def _exchange(s: Server, msg: dns.message.Message, doing: str) -> dns.message.Message:
    try:
        return dns.query.tcp(msg, s.host, port=s.port, timeout=s.timeout)
    except TSIG_ERRORS as exc:
        raise _key_problem(s, exc, doing) from exc
    except NETWORK_ERRORS as exc:
        raise ProviderUnavailable(reason=f"{doing} at {s.where}: cannot reach the server "
                                  f"({exc or type(exc).__name__})", retry_after=2.0) from exc


def check_soa(s: Server) -> None:
    doing = f"the SOA query for {s.zone}"
    q = dns.message.make_query(s.zone, "SOA")
    q.use_tsig(s.key)
    r = _exchange(s, q, doing)
    rcode = r.rcode()
    if rcode == dns.rcode.SERVFAIL:
        raise ProviderUnavailable(reason=f"{doing} at {s.where}: SERVFAIL (the zone may still be loading)",
                                  retry_after=2.0)
    origin = dns.name.from_text(s.zone)
    has_soa = any(rr.name == origin and rr.rdtype == dns.rdatatype.SOA for rr in r.answer)
    if rcode != dns.rcode.NOERROR or not has_soa or not r.flags & dns.flags.AA:
        seen = dns.rcode.to_text(rcode) + ("" if rcode != dns.rcode.NOERROR or has_soa else ", no SOA at that name")
        if rcode == dns.rcode.NOERROR and has_soa:
            seen += ", not authoritative"
        raise Permanent(
            f"{doing} at {s.where}: {seen}. The server does not serve the zone {s.zone}: check the zone name "
            "in the fleet file, and that the server is a primary for it (a zone block in named.conf) and lets "
            f"key {s.key_label} query it (allow-query)")


# An address dnsplane never writes (I5 refuses unspecified addresses): deleting it where the zone holds no
# such record is a no-op that an update-policy still has to allow for the type.
_NEVER_WRITTEN = {"A": "0.0.0.0", "AAAA": "::"}


def check_update(s: Server, probe: str, records: tuple[tuple[str, str], ...] = ()) -> None:
    """Send the no-op UPDATE: delete a TXT record that cannot exist at ``probe`` and, for each (name,
    type) of ``records``, that type's unspecified address at that name (absent, as the caller checked),
    and the same TXT at the zone's write token: a policy that grants TXT but not A or AAAA, or not the
    token (every write would be refused and the endpoints quarantined), is refused here, at start."""
    doing = f"a no-op UPDATE of {s.zone}"
    u = dns.update.UpdateMessage(s.zone)
    nonce = f'"dnsplane-preflight {secrets.token_hex(12)}"'
    u.delete(dns.name.from_text(probe), "TXT", nonce)
    u.delete(dns.name.from_text(token_name(normalise_name(s.zone))), "TXT", nonce)  # every write replaces it
    for name, rtype in records:
        u.delete(dns.name.from_text(name), rtype, _NEVER_WRITTEN[rtype])
    u.use_tsig(s.key)
    r = _exchange(s, u, doing)
    rcode = r.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    if rcode == dns.rcode.SERVFAIL:
        raise ProviderUnavailable(reason=f"{doing} at {s.where}: SERVFAIL", retry_after=2.0)
    raise Permanent(
        f"{doing} at {s.where}: {dns.rcode.to_text(rcode)}. The server refuses dynamic updates of {s.zone} "
        f"with key {s.key_label}: grant the key in the zone's update-policy (e.g. `grant {s.key_label} "
        f"subdomain {s.zone} A AAAA TXT;`) or allow-update, on the primary server (a secondary cannot be "
        "updated)")


def read_zone(s: Server) -> Zone:
    """The whole zone, by one TSIG-signed AXFR."""
    doing = f"the zone transfer (AXFR) of {s.zone}"
    rrs: list[tuple[str, str, str]] = []
    try:
        for msg in dns.query.xfr(s.host, s.zone, port=s.port, keyring={s.key.name: s.key}, keyname=s.key.name,
                                 keyalgorithm=s.key.algorithm, relativize=False, timeout=s.timeout,
                                 lifetime=max(s.timeout * 6, 30.0)):
            for rrset in msg.answer:
                name = rrset.name.to_text().lower()
                rtype = dns.rdatatype.to_text(rrset.rdtype)
                rrs.extend((name, rtype, rd.to_text().lower()) for rd in rrset)
    except dns.xfr.TransferError as exc:
        raise Permanent(
            f"{doing} at {s.where}: {dns.rcode.to_text(exc.rcode)}. The server refuses to transfer {s.zone} to "
            f"key {s.key_label}; dnsplane reads the zone that way: add `allow-transfer {{ key "
            f"{s.key_label}; }};` to the zone") from exc
    except TSIG_ERRORS as exc:
        raise _key_problem(s, exc, doing) from exc
    except NETWORK_ERRORS as exc:
        raise ProviderUnavailable(reason=f"{doing} at {s.where}: {exc or type(exc).__name__}",
                                  retry_after=2.0) from exc
    return zone_of(rrs)


def check_rfc2136(fleet: Fleet) -> list[Finding]:
    s = server_of(fleet)
    check_soa(s)
    keys = [ep.key for ep in fleet.endpoints]
    zone = read_zone(s)
    # one endpoint of each type, where the zone holds no unspecified address to delete by accident
    firsts = {k.rtype: k for k in reversed(keys)}
    probes = tuple((k.name, t) for t, k in sorted(firsts.items())
                   if _NEVER_WRITTEN[t] not in zone.get(k.name.lower(), {}).get(t, []))
    check_update(s, marker_name(keys[0]) if keys else f"_dnsplane-preflight.{fleet.zone}", probes)
    return analyse(fleet.zone, keys, zone)


# ------------------------------------------------------------------ embedded


def check_embedded(fleet: Fleet, provider: Provider) -> list[Finding]:
    seen = provider.read_all()
    out = []
    for ep in fleet.endpoints:
        o = seen.get(ep.key)
        if o is not None and o.records is not None and o.marker is None:
            addrs = ", ".join(sorted(o.records.addresses()))
            out.append(Finding("foreign", str(ep.key), ep.key.name,
                               f"{ep.key} holds records without a dnsplane marker ({addrs})",
                               "they are not dnsplane's and are left alone: delete them, or mark the endpoint "
                               "`adopt: true` in the fleet file to let dnsplane take them over"))
    return out


# ------------------------------------------------------------------ all of it


def check_files(*files: object) -> None:
    """``quick_check`` each opened SQLite file that offers ``check_integrity`` (store, embedded provider)."""
    for f in files:
        check = getattr(f, "check_integrity", None)
        if check is not None:
            check()


def preflight(fleet: Fleet, provider: Provider, store: object) -> list[Finding]:
    """Run every check for the fleet's provider; raise ``Permanent`` (exit 2) or ``ProviderUnavailable``
    (retry); return the report."""
    check_files(store, provider)
    match fleet.provider.kind:
        case "rfc2136":
            return check_rfc2136(fleet)
        case "embedded":
            return check_embedded(fleet, provider)
        case "route53":
            from dnsplane.providers.route53 import Route53Provider
            from dnsplane.providers.route53.preflight import check_route53

            assert isinstance(provider, Route53Provider), f"a route53 fleet with a {provider.kind} provider"
            check_route53(provider, [ep.key for ep in fleet.endpoints])
    return []
