"""A loopback HTTP proxy in front of ministack's Route 53 API that refuses what Route 53 documents it refuses.

ministack enforces only "CREATE of an existing set" and "exact DELETE"; behind ``route53_rules`` a
test sees Route 53's documented limits as well, answered with Route 53's error document
(``ErrorResponse/Error/{Type,Code,Message}`` + ``RequestId``, HTTP 400), so botocore raises the
``ClientError`` code it would raise against AWS:

- ``Throttling`` ("Rate exceeded") beyond ``rate`` requests/s for the whole proxy (one account);
- ``PriorRequestNotComplete`` for a ChangeResourceRecordSets while the zone's previous change
  (through this proxy) is still PENDING, i.e. younger than ``insync_after`` seconds;
- ``InvalidChangeBatch`` for a batch over the record or character quota, a name or label too
  long, a TXT string over 255 characters, more weighted sets than allowed at one name and type,
  or a CNAME sharing its name with a record set of another type once the batch is applied;
- GetChange answers PENDING for ``insync_after`` seconds after the change, then INSYNC.

Every other request and every request within the limits is forwarded unchanged and answered with
ministack's answer. The zone's contents the rules need (CNAME exclusivity, weighted count) are read
from ministack (ListResourceRecordSets from each name the batch touches), never from a copy kept
here; change batches of one zone are checked and forwarded one at a time, so no other change lands
between that read and the forward.

The limits and their sources are in tests/servers/route53_limits.py.

Limits (where this is stricter or looser than Route 53): PriorRequestNotComplete is modelled as
"the previous change is PENDING" (Route 53 documents only "can't process a request before the next
request arrives"); the proxy's own reads are neither counted nor throttled; requests are forwarded
one connection each.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from tests.servers.http_serving import loopback_server, serving
from tests.servers.route53_limits import (
    NS,
    PAGE,
    RATE,
    Limits,
    RecordSet,
    Refusal,
    applied,
    canonical,
    check_batch,
    check_zone,
    child,
    child_text,
    record_set,
)


def action_of(method: str, path: str) -> tuple[str, str | None]:
    """(Route 53 API action, hosted zone or change id) of a REST request."""
    p = re.sub(r"^/2013-04-01", "", urllib.parse.urlsplit(path).path).rstrip("/")
    routes = [
        ("POST", r"/hostedzone/([^/]+)/rrset", "ChangeResourceRecordSets"),
        ("GET", r"/hostedzone/([^/]+)/rrset", "ListResourceRecordSets"),
        ("GET", r"/change/([^/]+)", "GetChange"),
        ("GET", r"/hostedzone/([^/]+)", "GetHostedZone"),
        ("DELETE", r"/hostedzone/([^/]+)", "DeleteHostedZone"),
        ("POST", r"/hostedzone()", "CreateHostedZone"),
        ("GET", r"/hostedzone()", "ListHostedZones"),
        ("GET", r"/hostedzonesbyname()", "ListHostedZonesByName"),
        ("GET", r"/healthcheck()", "ListHealthChecks"),
    ]
    for m, pattern, action in routes:
        found = re.fullmatch(pattern, p)
        if method == m and found:
            return action, found.group(1) or None
    return f"{method} {p}", None


@dataclass
class RulesProxy:
    """The proxy's address and what it saw. ``calls``: API action -> requests received (refused ones
    included); ``refusals``: error code -> requests refused by a rule of this proxy."""

    url: str
    upstream: str
    limits: Limits
    rate: float
    insync_after: float
    calls: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    _changes: dict[str, float] = field(default_factory=dict)  # change id -> when it was accepted
    _last_change: dict[str, float] = field(default_factory=dict)  # zone id -> when its last change was accepted
    _zone_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: float = 0.0
    _stamp: float = field(default_factory=time.monotonic)

    # -- rules outside a batch -------------------------------------------------------

    def take_token(self) -> None:
        """One request of the account's ``rate`` per second (a bucket of ``rate`` tokens); else ``Throttling``."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                raise Refusal("Throttling", "Rate exceeded")
            self._tokens -= 1.0

    def pending(self, accepted_at: float) -> bool:
        return time.monotonic() - accepted_at < self.insync_after

    def pending_changes(self) -> list[str]:
        """Ids of the changes accepted through this proxy that GetChange would answer PENDING now."""
        with self._lock:
            return [change_id for change_id, at in self._changes.items() if self.pending(at)]

    def zone_lock(self, zone_id: str) -> threading.Lock:
        with self._lock:
            return self._zone_locks.setdefault(zone_id, threading.Lock())

    # -- upstream ---------------------------------------------------------------------

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _get_xml(self, path: str) -> ElementTree.Element:
        status, _, body = self.forward("GET", path, {}, b"")
        root = ElementTree.fromstring(body)
        if status != 200:
            raise Refusal(
                child_text(child(root, "Error") or root, "Code") or "InternalError",
                child_text(child(root, "Error") or root, "Message") or "",
                status,
            )
        return root

    def hosted_zone(self, zone_id: str) -> tuple[str, int]:
        """(name, ResourceRecordSetCount) of a hosted zone, as ministack answers GetHostedZone now."""
        zone = child(self._get_xml(f"/2013-04-01/hostedzone/{zone_id}"), "HostedZone")
        if zone is None:
            return "", 0
        return canonical(child_text(zone, "Name") or ""), int(child_text(zone, "ResourceRecordSetCount") or 0)

    def page(self, zone_id: str, query: dict[str, str]) -> tuple[list[RecordSet], dict[str, str] | None]:
        """One ListResourceRecordSets page: its record sets and the query of the next page (None: the last)."""
        root = self._get_xml(f"/2013-04-01/hostedzone/{zone_id}/rrset?{urllib.parse.urlencode(query)}")
        listed = child(root, "ResourceRecordSets")
        sets = [record_set(el) for el in ([] if listed is None else list(listed))]
        if child_text(root, "IsTruncated") != "true":
            return sets, None
        return sets, {"name": child_text(root, "NextRecordName") or "",
                      "type": child_text(root, "NextRecordType") or "",
                      "identifier": child_text(root, "NextRecordIdentifier") or "", "maxitems": str(PAGE)}

    def sets_named(self, zone_id: str, names: list[str]) -> list[RecordSet]:
        """Every record set at ``names`` as ministack holds it now, in one sweep in its listing order: a page
        from the first name not yet covered, every wanted name the page covers taken, on to the next; never
        more pages than a listing of the whole zone. (ministack sorts the whole zone for every request: at
        30,000 record sets a page costs about 60 ms, so a whole listing for each change batch made the
        layer, not Route 53's rules, the slowest part of a bench at 10,000 endpoints.)"""
        left = sorted(set(names), key=_listing_order)
        found: list[RecordSet] = []
        query: dict[str, str] | None = None
        while left:
            if query is None:
                query = {"name": left[0], "maxitems": str(PAGE)}
            start = _listing_order(query["name"])
            sets, query = self.page(zone_id, query)
            wanted = set(left)
            found += [s for s in sets if s.name in wanted]
            # covered: from the page's start to just before the next page's first name (which may go on there)
            end = None if query is None else _listing_order(query["name"])
            left = [n for n in left if not (start <= _listing_order(n) and (end is None or _listing_order(n) < end))]
            if query is not None and (not left or _listing_order(left[0]) != end):
                query = None  # the next wanted name is further on: jump to it
        return found

    # -- ChangeResourceRecordSets and GetChange ------------------------------------------

    def check_change(self, zone_id: str, body: bytes) -> None:
        """Every rule a ChangeResourceRecordSets breaks (raises ``Refusal``); call under the zone's lock."""
        last = self._last_change.get(zone_id)
        if last is not None and self.pending(last):
            raise Refusal(
                "PriorRequestNotComplete",
                "The request was rejected because Route 53 was still processing a prior request.",
            )
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise Refusal("InvalidInput", f"The XML document is malformed: {exc}") from exc
        batch = child(root, "ChangeBatch")
        listed = None if batch is None else child(batch, "Changes")
        changes = []
        for c in [] if listed is None else list(listed):
            rrs = child(c, "ResourceRecordSet")
            if rrs is not None:
                changes.append(((child_text(c, "Action") or "").upper(), record_set(rrs)))
        check_batch(changes, self.limits)
        zone_name, _ = self.hosted_zone(zone_id)
        current = self.sets_named(zone_id, list(dict.fromkeys(s.name for _, s in changes)))
        check_zone(applied(current, changes), zone_name, self.limits)

    def accepted(self, zone_id: str, body: bytes) -> None:
        now = time.monotonic()
        change_id = re.search(rb"<Id>(?:/change/)?([^<]+)</Id>", body)
        with self._lock:
            self._last_change[zone_id] = now
            if change_id:
                self._changes[change_id.group(1).decode()] = now

    def change_status(self, change_id: str, body: bytes) -> bytes:
        with self._lock:
            accepted_at = self._changes.get(change_id)
        if accepted_at is None:
            return body  # not made through this proxy: ministack's answer
        status = b"PENDING" if self.pending(accepted_at) else b"INSYNC"
        return re.sub(rb"<Status>[A-Z]+</Status>", b"<Status>" + status + b"</Status>", body)


def _listing_order(name: str) -> tuple[str, ...]:
    """Where ministack lists a name: its labels from the root, compared label by label."""
    return tuple(reversed(canonical(name).rstrip(".").split(".")))


def error_document(code: str, message: str) -> tuple[bytes, str]:
    request_id = str(uuid.uuid4())
    return (
        f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode(), request_id


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


def _handler(proxy: RulesProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in _HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            action, ident = action_of(self.command, self.path)
            with proxy._lock:
                proxy.calls[action] += 1
            try:
                proxy.take_token()
                if action == "ChangeResourceRecordSets" and ident is not None:
                    with proxy.zone_lock(ident):
                        proxy.check_change(ident, body)
                        status, out_headers, out = proxy.forward(self.command, self.path, headers, body)
                        if status == 200:
                            proxy.accepted(ident, out)
                else:
                    status, out_headers, out = proxy.forward(self.command, self.path, headers, body)
                    if action == "GetChange" and ident is not None and status == 200:
                        out = proxy.change_status(ident, out)
            except Refusal as refusal:
                with proxy._lock:
                    proxy.refusals[refusal.code] += 1
                doc, request_id = error_document(refusal.code, refusal.message)
                self._answer(refusal.status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], doc)
                return
            self._answer(status, out_headers, out)

        do_GET = do_POST = do_DELETE = do_PUT = _handle

    return Handler


@contextmanager
def route53_rules(
    upstream_url: str, *, rate: float = RATE, insync_after: float = 0.0, **limits: int
) -> Iterator[RulesProxy]:
    """A ``RulesProxy`` on a free loopback port in front of ``upstream_url`` (ministack) while the block runs.

    ``limits`` override the documented quotas by ``Limits`` field name (``max_weighted=3``), so a test
    can reach a limit with a few records."""
    server, url = loopback_server()
    proxy = RulesProxy(url, upstream_url.rstrip("/"), replace(Limits(), **limits), rate, insync_after, _tokens=rate)
    server.RequestHandlerClass = _handler(proxy)
    with serving(server, "route53-rules"):
        yield proxy
