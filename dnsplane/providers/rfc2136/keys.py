"""TSIG keys for the RFC 2136 provider: BIND-format key files, read into a ``TsigKey`` value.

Promises: ``parse_key_file`` accepts what ``tsig-keygen`` writes and hand-written files with
``#``, ``//`` and ``/* */`` comments; every refusal is ``InvalidConfig(path, line, message)``
naming the line at fault; the algorithm is one dnspython knows for TSIG and the secret is
non-empty base64.

Limits: only ``key { algorithm ...; secret "..."; };`` blocks are read (no ``include``, no
``server`` clauses); the secret is kept as text and is not checked against the algorithm's size.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from dnsplane.errors import InvalidConfig
from dnsplane.model import normalise_name


@dataclass(frozen=True, slots=True)
class TsigKey:
    """A TSIG key: its name (absolute), algorithm and base64 secret."""

    name: str
    algorithm: str
    secret: str


_KEY_BLOCK = re.compile(r'\bkey\s+"?([A-Za-z0-9._-]+)"?\s*\{(.*?)\}\s*;', re.S)
_ALGORITHM = re.compile(r'\balgorithm\s+"?([A-Za-z0-9.-]+)"?\s*;')
_SECRET = re.compile(r'\bsecret\s+"([^"]*)"\s*;')
_TOKENS = re.compile(r'"[^"]*"|/\*.*?\*/|(?:#|//)[^\n]*', re.S)


def parse_key_file(path: str | Path, key_name: str | None = None) -> TsigKey:
    """Read a BIND-format key file (``key "name" { algorithm hmac-sha256; secret "..."; };``).

    Several keys may be in the file; ``key_name`` chooses one (required then). Raises
    ``InvalidConfig(path, line, message)`` naming what is wrong.
    """
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidConfig(path, 0, f"cannot read TSIG key file: {exc.strerror or exc}") from exc
    # comments: '#', '//' to end of line and '/* */', blanked so line numbers stay right; quoted
    # strings are skipped, since a base64 secret may hold '//'
    text = _TOKENS.sub(lambda m: m.group() if m.group().startswith('"') else re.sub(r"[^\n]", " ", m.group()), text)

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    blocks = list(_KEY_BLOCK.finditer(text))
    if not blocks:
        expected = 'key "name" { algorithm hmac-sha256; secret "..."; };'
        raise InvalidConfig(path, 1, f"no key block found; expected {expected}")
    if key_name is not None:
        wanted = normalise_name(key_name)
        blocks = [b for b in blocks if normalise_name(b.group(1)) == wanted]
        if not blocks:
            raise InvalidConfig(path, 1, f"no key named {key_name!r} in the file")
    elif len(blocks) > 1:
        names = ", ".join(b.group(1) for b in blocks)
        raise InvalidConfig(path, line_of(blocks[1].start()), f"several keys ({names}); choose one with key_name")
    block = blocks[0]
    body, at = block.group(2), block.start(2)
    algorithm = _ALGORITHM.search(body)
    secret = _SECRET.search(body)
    if algorithm is None:
        raise InvalidConfig(path, line_of(block.start()), f"key {block.group(1)!r} has no 'algorithm ...;'")
    if secret is None:
        raise InvalidConfig(path, line_of(block.start()), f"key {block.group(1)!r} has no 'secret \"...\";'")
    alg = algorithm.group(1).lower()
    alg = _ALIASES.get(alg, alg)
    if not known_algorithm(alg):
        raise InvalidConfig(path, line_of(at + algorithm.start()), f"unknown TSIG algorithm {alg!r}")
    try:
        raw = base64.b64decode(secret.group(1), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise InvalidConfig(path, line_of(at + secret.start()), "secret is not valid, non-empty base64")
    return TsigKey(normalise_name(block.group(1)), alg, secret.group(1))


# What BIND's key files call an algorithm, where TSIG's wire name differs (RFC 8945 §6)
_ALIASES = {"hmac-md5": "hmac-md5.sig-alg.reg.int"}


def known_algorithm(name: str) -> bool:
    """Whether dnspython knows ``name`` as a TSIG algorithm."""
    try:
        return dns.name.from_text(name) in dns.tsig.mac_sizes
    except dns.exception.DNSException:
        return False
