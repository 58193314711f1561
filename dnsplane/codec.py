"""Record sets as compact JSON: the one codec of the SQLite store, the embedded provider and the marker
TXT of the RFC 2136 and Route 53 providers (``providers/marker_txt.py``).

``encode_records`` produces exactly ``json.dumps(rs.to_json(), separators=(",", ":"))`` (ASCII only,
the same escaping) at about a third of the cost; ``decode_records`` reads it (and any JSON of
``RecordSet.to_json``) back. ``RecordSetCodec`` adds a bounded cache, so that reading back what this
process wrote is a dictionary lookup. Pure: no I/O.
"""

from __future__ import annotations

import itertools
import json
from json.encoder import encode_basestring_ascii as _quote

from dnsplane.model import RecordSet

CACHE_LIMIT = 131_072  # parsed record sets kept by JSON text


def encode_records(rs: RecordSet) -> str:
    """Compact JSON of ``rs.to_json()``: exactly ``json.dumps(rs.to_json(), separators=(",", ":"))``."""
    members = ",".join(
        f"[{_quote(m.target_id)},[{','.join(map(_quote, m.addresses))}],{int(m.weight)}]" for m in rs.members
    )
    return f'{{"ttl":{int(rs.ttl)},"answer":{_quote(rs.answer)},"members":[{members}]}}'


def decode_records(text: str) -> RecordSet:
    """The record set of a JSON text of ``RecordSet.to_json`` (``ValueError`` when it is none, or
    ``RecursionError`` for JSON nested thousands deep)."""
    return RecordSet.from_json(json.loads(text))


class RecordSetCodec:
    """Compact JSON of ``RecordSet.to_json()`` and back, with a bounded parse cache.

    ``encode`` produces exactly ``json.dumps(rs.to_json(), separators=(",", ":"))``
    (the same escaping), only faster, and remembers the pair so that reading
    back what this process wrote costs a dictionary lookup. Threads may share one (the SQLite store
    decodes a plan's changes outside its lock): a lost race only costs a parse.
    """

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._limit = limit
        self._parsed: dict[str, RecordSet] = {}

    def encode(self, rs: RecordSet) -> str:
        text = encode_records(rs)
        self._remember(text, rs)
        return text

    def decode(self, text: str) -> RecordSet:
        rs = self._parsed.get(text)
        if rs is None:
            rs = decode_records(text)
            self._remember(text, rs)
        return rs

    def _remember(self, text: str, rs: RecordSet) -> None:
        if len(self._parsed) >= self._limit:
            # forget the older half (dicts keep insertion order); a miss only costs a parse
            for old in list(itertools.islice(self._parsed, self._limit // 2)):
                self._parsed.pop(old, None)  # (another thread may be forgetting the same ones)
        self._parsed[text] = rs
