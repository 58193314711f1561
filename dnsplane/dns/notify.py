"""NOTIFY (RFC 1996) from the embedded server to its secondaries, after every applied change.

What this module owns: ``Notifier``, which the server tells of each new serial of a zone
(``changed``, loop thread); for each (zone, secondary) it sends a NOTIFY over UDP (opcode NOTIFY,
AA, the question ``<zone> SOA`` and the new SOA in the answer section as RFC 1996 §3.7 allows,
TSIG-signed with the transfer key when one is configured) and retries until the secondary
acknowledges it.

Guarantees:
- never blocks answering: every NOTIFY runs in its own task on the server's event loop, awaiting
  its answer without holding anything the query path needs;
- retries until acknowledged (a response with opcode NOTIFY and rcode NOERROR), every
  ``RETRY_FIRST`` s at first, doubling up to ``RETRY_MAX`` s (RFC 1996 §3.6 leaves the interval to
  the primary), and at once when a newer serial comes; there is no last attempt: a secondary that
  comes back is notified;
- at most one NOTIFY in flight per (zone, secondary); a newer serial arriving meanwhile is sent
  once the current one is answered (or its attempt times out), so a burst of changes costs a
  secondary one NOTIFY per round trip, not one per change;
- ``stop`` cancels every task it started.

Limits: UDP only (no fallback to TCP); a secondary that refuses the NOTIFY (REFUSED, NOTAUTH) is
retried like one that does not answer, and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig

log = logging.getLogger("dnsplane.dns")

RETRY_FIRST = 1.0  # seconds before the first retry, doubled each time
RETRY_MAX = 30.0
ATTEMPT_TIMEOUT = 2.0  # seconds an attempt waits for the acknowledgement


class Notifier:
    """Sends NOTIFY for each zone change to every target, retrying until acknowledged."""

    def __init__(
        self,
        targets: tuple[tuple[str, int], ...],
        keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
        key_name: dns.name.Name | None = None,
    ) -> None:
        self.targets = targets
        self.keyring = keyring
        self.key_name = key_name
        self._wanted: dict[tuple[str, tuple[str, int]], dns.rrset.RRset] = {}  # newest SOA not yet acknowledged
        self._tasks: dict[tuple[str, tuple[str, int]], asyncio.Task[None]] = {}
        self._wake: dict[tuple[str, tuple[str, int]], asyncio.Event] = {}  # a newer serial cuts a retry's wait
        self.acknowledged: dict[tuple[str, tuple[str, int]], int] = {}  # last serial each target acknowledged
        self.sent = 0

    def changed(self, zone: str, soa: dns.rrset.RRset) -> None:
        """``zone`` now has ``soa``: notify every target (loop thread, with a running loop)."""
        for target in self.targets:
            job = (zone, target)
            self._wanted[job] = soa
            self._wake.setdefault(job, asyncio.Event()).set()
            task = self._tasks.get(job)
            if task is None or task.done():
                self._tasks[job] = asyncio.get_running_loop().create_task(self._run(job))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, job: tuple[str, tuple[str, int]]) -> None:
        zone, (host, port) = job
        delay = RETRY_FIRST
        while job in self._wanted:
            soa = self._wanted[job]
            serial = int(soa[0].serial)
            q = dns.message.make_query(zone, dns.rdatatype.SOA)
            q.flags = dns.flags.AA  # and no RD; the opcode lives in the flags word, so it is set after
            q.set_opcode(dns.opcode.NOTIFY)
            q.answer.append(soa)
            if self.keyring is not None:
                q.use_tsig(self.keyring, self.key_name)
            self.sent += 1
            log.debug("NOTIFY %s serial %d to %s:%d", zone, serial, host, port,
                      extra={"event": "notify_sent", "zone": zone, "serial": serial, "peer": f"{host}:{port}"})
            problem = ""
            try:
                r = await dns.asyncquery.udp(q, host, timeout=ATTEMPT_TIMEOUT, port=port)
                if r.opcode() == dns.opcode.NOTIFY and r.rcode() == dns.rcode.NOERROR:
                    self.acknowledged[job] = serial
                    log.debug(
                        "NOTIFY %s serial %d acknowledged by %s:%d",
                        zone,
                        serial,
                        host,
                        port,
                        extra={"event": "notify_ack", "zone": zone, "serial": serial, "peer": f"{host}:{port}"},
                    )
                    if self._wanted.get(job) is soa:
                        del self._wanted[job]
                    delay = RETRY_FIRST
                    continue
                problem = f"answered {dns.rcode.to_text(r.rcode())}"
            except (dns.exception.DNSException, OSError, dns.tsig.PeerError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.info(
                "NOTIFY %s serial %d to %s:%d not acknowledged (%s); retry in %.0f s",
                zone,
                serial,
                host,
                port,
                problem,
                delay,
                extra={"event": "notify_retry", "zone": zone, "serial": serial, "peer": f"{host}:{port}"},
            )
            wake = self._wake.setdefault(job, asyncio.Event())
            if self._wanted.get(job) is soa:  # nothing newer came meanwhile: wait the retry interval
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)  # RFC 1996 §3.6's interval, or a newer serial
            delay = min(delay * 2, RETRY_MAX)
