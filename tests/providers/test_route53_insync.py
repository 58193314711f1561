"""``wait_insync`` and ``PriorRequestNotComplete`` on ministack behind the rules proxy, whose changes stay
PENDING for ``insync_after`` seconds (tests/servers/route53_rules.py).

The wait polls GetChange with growing delays until INSYNC, and gives up with a clear Retryable error
at its bound; a change batch sent while the zone's previous change is still PENDING is refused by
the proxy as Route 53 refuses it and retried with backoff by the provider.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from dnsplane.errors import ProviderUnavailable
from dnsplane.model import Observed, Write
from dnsplane.providerconfig import Route53Config
from dnsplane.providers.base import Applied
from dnsplane.providers.route53 import Route53Provider, ThrottleBudget
from tests.fakes import ZONE, key, marker, member, rs
from tests.servers.ministack import Ministack, ministack_direct  # noqa: F401 - module fixture
from tests.servers.route53_rules import RulesProxy, route53_rules

A = key("a.demo.test")
B = key("b.demo.test")
ONE = rs(member("lb1", "192.0.2.1"), member("lb2", "192.0.2.2", weight=3))


def first_write(k: object, g: int = 1) -> Write:
    return Write(k, None, ONE, marker(g, ONE))  # type: ignore[arg-type]


class Recorded:
    """A real sleep that keeps every delay it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


def provider(proxy: RulesProxy, zone_id: str, sleep: Recorded, *, wait_insync: bool) -> Route53Provider:
    return Route53Provider(
        ZONE,
        Route53Config(zone_id, endpoint_url=proxy.url, wait_insync=wait_insync),
        budget=ThrottleBudget(10_000),
        sleep=sleep,
        rng=random.Random(14),
    )


@pytest.fixture
def pending(ministack_direct: Ministack) -> Iterator[tuple[RulesProxy, str]]:  # noqa: F811
    """A proxy whose changes are PENDING for 0.6 s, and a fresh hosted zone behind it."""
    with route53_rules(ministack_direct.url, rate=10_000, insync_after=0.6) as proxy:
        yield proxy, Ministack(proxy.url, ministack_direct.process, proxy).create_zone(ZONE)


def test_wait_insync_polls_with_backoff_until_insync(pending: tuple[RulesProxy, str]) -> None:
    proxy, zone_id = pending
    sleep = Recorded()
    p = provider(proxy, zone_id, sleep, wait_insync=True)
    p.INSYNC_FIRST_POLL = 0.05  # type: ignore[misc]
    assert p.apply([first_write(A)]) == [Applied(A)]
    # the apply returned only once its change was INSYNC (without the wait it would be PENDING 0.6 s more)
    assert proxy.calls["ChangeResourceRecordSets"] == 1 and proxy.pending_changes() == []
    assert proxy.calls["GetChange"] == p.calls["get_change"] >= 2  # PENDING at least once, then INSYNC
    # each wait drawn from [step/2, step], the step doubling from 0.05 s
    for i, d in enumerate(sleep.delays):
        assert 0.05 * 2**i / 2 <= d <= 0.05 * 2**i
    assert p.read([A])[A] == Observed(ONE, marker(1, ONE))


def test_wait_insync_gives_up_at_its_bound_with_a_clear_error(pending: tuple[RulesProxy, str]) -> None:
    proxy, zone_id = pending
    proxy.insync_after = 3600.0  # never INSYNC while the test runs
    sleep = Recorded()
    p = provider(proxy, zone_id, sleep, wait_insync=True)
    p.INSYNC_FIRST_POLL, p.INSYNC_TIMEOUT = 0.05, 0.4  # type: ignore[misc]
    with pytest.raises(ProviderUnavailable) as err:
        p.apply([first_write(A)])
    message = str(err.value)
    assert "is committed but still PENDING after 0.4s" in message and "wait_insync bound" in message
    assert zone_id in message
    assert sum(sleep.delays) == pytest.approx(0.4)  # polled up to the bound, not beyond it
    assert p.calls["get_change"] == len(sleep.delays)
    # committed: the write is there, and applying it again costs no change batch
    proxy.insync_after = 0.0
    assert p.read([A])[A] == Observed(ONE, marker(1, ONE))
    assert p.apply([first_write(A)]) == [Applied(A, written=False)]


def test_a_change_while_the_previous_is_pending_is_retried_until_accepted(pending: tuple[RulesProxy, str]) -> None:
    proxy, zone_id = pending
    sleep = Recorded()
    p = provider(proxy, zone_id, sleep, wait_insync=False)
    assert p.apply([first_write(A)]) == [Applied(A)]
    assert p.apply([first_write(B)]) == [Applied(B)]  # refused while A's change is PENDING, then sent again
    assert proxy.refusals["PriorRequestNotComplete"] >= 1
    assert p.calls["change_resource_record_sets"] == 2 + proxy.refusals["PriorRequestNotComplete"]
    assert p.read([A, B]) == {A: Observed(ONE, marker(1, ONE)), B: Observed(ONE, marker(1, ONE))}
