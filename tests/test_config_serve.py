"""The fleet file's ``serve:`` block (hidden primary, RRL): values and errors at their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsplane.cli import main
from dnsplane.config import ServeConfig, TransferKey, parse_fleet
from dnsplane.dns.ratelimit import RateLimit
from dnsplane.dns.transfer import policy_of
from dnsplane.errors import InvalidConfig
from dnsplane.runtime.app import rate_limit_of

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg=="
HEAD = "zone: demo.test\n"
TAIL = "targets:\n  lb-1: {addresses: [192.0.2.1]}\nendpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n"


def fleet(serve: str, provider: str = "") -> str:
    return HEAD + provider + "serve:\n" + serve.replace("$SECRET", SECRET) + TAIL


GOOD = """\
  ns: [ns1.example.net., NS2.Example.NET.]
  transfer:
    allow: [127.0.0.1, 192.0.2.0/24, "2001:db8::/32"]
    key: {name: xfr-key, algorithm: hmac-sha512, secret: "$SECRET"}
  notify: [127.0.0.1:5300, "[::1]:53"]
  journal: 10
  rrl: {per_second: 20, slip: 0}
"""


def test_serve_block_loads_into_values() -> None:
    serve = parse_fleet(fleet(GOOD)).serve
    assert serve == ServeConfig(
        transfer=True,
        allow=("127.0.0.1/32", "192.0.2.0/24", "2001:db8::/32"),
        key=TransferKey("xfr-key.", "hmac-sha512", SECRET),
        notify=(("127.0.0.1", 5300), ("::1", 53)),
        journal=10,
        ns=("ns1.example.net.", "ns2.example.net."),
        rrl_per_second=20,
        rrl_slip=0,
    )
    assert rate_limit_of(serve) == RateLimit(20, 0)
    assert rate_limit_of(parse_fleet(fleet("  rrl: {per_second: 5}\n")).serve) == RateLimit(5, 2)
    policy = policy_of(serve)
    assert policy.allows("192.0.2.77") and policy.allows("::ffff:127.0.0.1") and not policy.allows("127.0.0.2")
    assert policy.key is not None and str(policy.key.algorithm) == "hmac-sha512."


def test_no_serve_block_refuses_every_transfer_and_keeps_ns1() -> None:
    serve = parse_fleet(HEAD + TAIL).serve
    assert serve == ServeConfig()
    assert rate_limit_of(serve) is None  # no RRL unless asked for
    policy = policy_of(serve)
    assert not policy.allows("127.0.0.1") and policy.keyring is None and policy.nameservers == ()


def test_key_file_is_read_as_the_rfc2136_provider_reads_it(tmp_path: Path) -> None:
    (tmp_path / "xfr.key").write_text(f'key "xfr-key" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n')
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet("  transfer: {allow: [127.0.0.1], key: {file: xfr.key}}\n"))
    from dnsplane.config import load_fleet

    serve = load_fleet(path).serve
    assert serve.key == TransferKey("", "", "", str(tmp_path / "xfr.key"))
    policy = policy_of(serve)
    assert policy.key is not None and policy.key.name.to_text() == "xfr-key."
    (tmp_path / "xfr.key").write_text('key "xfr-key" {\n\talgorithm hmac-sha256;\n\tsecret "***";\n};\n')
    with pytest.raises(InvalidConfig) as info:
        policy_of(load_fleet(path).serve)
    assert (info.value.path, info.value.line) == (str(tmp_path / "xfr.key"), 3)


BAD = [
    ("unknown-key", "  transfers: {}\n", 3, "serve: unknown key 'transfers' (did you mean 'transfer'?)"),
    ("allow-missing", "  transfer: {key: {name: k, secret: $SECRET}}\n", 3, "missing required key 'allow'"),
    ("allow-scalar", "  transfer: {allow: 127.0.0.1}\n", 3, "serve.transfer.allow: must be a list"),
    ("allow-empty", "  transfer: {allow: []}\n", 3, "serve.transfer.allow: must not be empty"),
    ("allow-bad", "  transfer:\n    allow: [127.0.0.1, nope]\n", 4, "serve.transfer.allow[1]: must be an IP address"),
    ("allow-host-bits", "  transfer: {allow: [10.0.0.1/8]}\n", 3, "has host bits set"),
    ("allow-dup", "  transfer: {allow: [10.0.0.0/8, 10.0.0.0/8]}\n", 3, "duplicate 10.0.0.0/8"),
    ("key-no-secret", "  transfer:\n    allow: [127.0.0.1]\n    key: {name: k}\n", 5, "missing required key 'secret'"),
    ("key-bad-secret", "  transfer:\n    allow: [127.0.0.1]\n    key: {name: k, secret: '%%'}\n", 5,
     "serve.transfer.key.secret: must be non-empty base64"),
    ("key-algorithm", "  transfer:\n    allow: [127.0.0.1]\n    key: {name: k, algorithm: md4, secret: $SECRET}\n",
     5, "serve.transfer.key.algorithm: must be one of hmac-sha256"),
    ("key-file-missing", "  transfer:\n    allow: [127.0.0.1]\n    key: {file: /nonexistent/x.key}\n", 5,
     "serve.transfer.key.file: no such file"),
    ("key-file-and-secret", "  transfer:\n    allow: [127.0.0.1]\n    key:\n      file: x.key\n      secret: $SECRET\n",
     7, "give either file (and name) or name, algorithm and secret"),
    ("notify-no-port", "  notify: [127.0.0.1]\n", 3, "serve.notify[0]: must be 'host:port'"),
    ("notify-name", "  notify: ['ns1.example.net:53']\n", 3, "serve.notify[0]: the host must be an IP address"),
    ("notify-port", "  notify: ['127.0.0.1:0']\n", 3, "port must be within 1..65535, got 0"),
    ("journal-zero", "  journal: 0\n", 3, "serve.journal: must be within 1..100000, got 0"),
    ("ns-relative", "  ns:\n    - ns1.example.net\n", 4, "serve.ns[0]: must be an absolute name with a trailing dot"),
    ("ns-in-zone", "  ns: [ns1.demo.test.]\n", 3, "is inside the zone demo.test."),
    ("ns-bad-label", "  ns: [a..b.]\n", 3, "serve.ns[0]:"),
    ("rrl-scalar", "  rrl: 20\n", 3, "serve.rrl: must be a mapping"),
    ("rrl-no-rate", "  rrl: {slip: 2}\n", 3, "missing required key 'per_second'"),
    ("rrl-zero", "  rrl:\n    per_second: 0\n", 4, "serve.rrl.per_second: must be within 1..1000000, got 0"),
    ("rrl-slip", "  rrl: {per_second: 5, slip: 11}\n", 3, "serve.rrl.slip: must be within 0..10, got 11"),
]


@pytest.mark.parametrize(("serve", "line", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_serve_values_are_refused_at_their_line(serve: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_fleet(fleet(serve), "fleet.yaml")
    assert (info.value.line, fragment in info.value.message) == (line, True), str(info.value)


def test_serve_with_another_provider_is_refused() -> None:
    provider = "provider: {kind: rfc2136, server: 127.0.0.1}\n"
    with pytest.raises(InvalidConfig) as info:
        parse_fleet(fleet("  transfer: {allow: [127.0.0.1]}\n", provider), "fleet.yaml")
    assert info.value.line == 3 and "applies to the embedded provider only" in info.value.message


def test_validate_exits_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet("  transfer: {allow: [not-an-address]}\n"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: serve.transfer.allow[0]: must be an IP address" in " ".join(err.split())


def test_validate_reads_the_transfer_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key file that exists but does not parse is found by validate, at the key file's line, as by up."""
    (tmp_path / "xfr.key").write_text('key "xfr-key" {\n\talgorithm hmac-sha256;\n\tsecret "***";\n};\n')
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet("  transfer: {allow: [127.0.0.1], key: {file: xfr.key}}\n"))
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'xfr.key'}:3:" in err, err
    (tmp_path / "xfr.key").write_text(f'key "xfr-key" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n')
    assert main(["validate", str(path)]) == 0
