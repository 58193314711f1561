"""Another installation's marker whose ``g=`` a person garbled, read from a real BIND9: still another owner's.

``read_marker`` reads a marker TXT with an out-of-range or garbage ``g=`` as a corrupt marker (so its records
are repaired, not taken for foreign ones). It used to drop the rest of the text, ``o=`` included: another
installation's marker then passed for one written before owner ids, that is for this installation's, and
the verifier repaired over it (I7). Found by reading the code (issue 13's campaign: the simulator's text
marker path parses with ``Marker.from_text``, not ``read_marker``)."""

from __future__ import annotations

import dns.rdatatype

from dnsplane.model import CORRUPT_GENERATION, marker_name
from dnsplane.protocol.ownership import Ownership
from dnsplane.providerconfig import Rfc2136Config
from dnsplane.providers.rfc2136 import Rfc2136Provider
from tests.fakes import ZONE, key
from tests.servers.named import NamedServer, named  # noqa: F401 - module fixture

API = key("api.demo.test")


def test_another_owners_marker_with_a_garbled_generation_stays_foreign(named: NamedServer) -> None:  # noqa: F811
    named.reset()
    u = named.update()  # the other installation's endpoint, its marker's g= then garbled by hand
    u.add(API.name, 30, dns.rdatatype.A, "192.0.2.11")
    garbled = '"dnsplane g=12x d=0123456789abcdef p=aaaaaaaaaaaa.bbbbbbbb o=other"'
    u.add(marker_name(API), 30, dns.rdatatype.TXT, garbled)
    named.send(u)
    provider = Rfc2136Provider(ZONE, Rfc2136Config(named.host, named.port, key_file=named.key_file))
    try:
        seen = provider.read([API])[API]
    finally:
        provider.close()
    assert seen.marker is not None and seen.marker.generation == CORRUPT_GENERATION
    assert seen.marker.owner == "other"
    ours = Ownership(owner="mine")
    assert ours.foreign(seen, API) == "marker of another owner 'other'"  # reported, never repaired
    assert not ours.pre_owner(seen)  # not taken for this installation's marker written before owner ids
