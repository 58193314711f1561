"""Typed provider settings (``dnsplane.providerconfig``): one class per kind whose fields are the options.

A fleet file's ``provider:`` block is validated into its kind's class with ``file:line`` errors (a
typo'd option with a did-you-mean, a wrong-typed value, a missing required one), the runtime opens
providers from the typed value, and the docs list exactly the fields: the names live in one place.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dnsplane.cli import main
from dnsplane.config import load_fleet, parse_fleet
from dnsplane.errors import InvalidConfig
from dnsplane.providerconfig import (
    CONFIGS,
    EmbeddedConfig,
    Rfc2136Config,
    Route53Config,
    config_of,
    option_fields,
)
from dnsplane.runtime.providers import dns_view, open_provider

DOCS = Path(__file__).resolve().parents[1] / "docs"
KEY = 'key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n'

FLEET = """zone: demo.test
provider:
  kind: {kind}
{options}targets:
  lb-1: {{addresses: [192.0.2.1]}}
endpoints:
  - {{name: api, ttl: 30, targets: [lb-1]}}
"""


def fleet_file(tmp_path: Path, kind: str, *options: str) -> Path:
    (tmp_path / "k.key").write_text(KEY)
    f = tmp_path / "fleet.yaml"
    f.write_text(FLEET.format(kind=kind, options="".join(f"  {o}\n" for o in options)))
    return f


def refused(f: Path) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as err:
        load_fleet(f)
    return err.value


@pytest.mark.parametrize(
    ("kind", "options", "line", "fragments"),
    [
        # a typo'd option: its line, the option, the closest name and every allowed one
        ("rfc2136", ["server: 127.0.0.1", "prot: 5300"], 5,
         ["provider (rfc2136): unknown key 'prot' (did you mean 'port'?)", "allowed keys: kind, server, port,"]),
        ("route53", ["hosted_zone_id: Z1", "wait_in_sync: true"], 5,
         ["unknown key 'wait_in_sync' (did you mean 'wait_insync'?)"]),
        ("rfc2136", ["server: 127.0.0.1", "key_fiel: k.key"], 5, ["unknown key 'key_fiel' (did you mean 'key_file'?)"]),
        # a wrong-typed value: its line, the option, what it must be and what it got
        ("rfc2136", ["server: 127.0.0.1", 'port: "abc"'], 5, ["provider.port: must be an integer, got 'abc'"]),
        ("rfc2136", ["server: 127.0.0.1", "port: 53.5"], 5, ["provider.port: must be an integer, got 53.5"]),
        ("rfc2136", ["server: 127.0.0.1", "timeout: fast"], 5, ["provider.timeout: must be a number, got 'fast'"]),
        ("rfc2136", ["server: 127.0.0.1", "timeout: 0"], 5, ["provider.timeout: must be more than 0, got 0"]),
        ("rfc2136", ["server: 127.0.0.1", "max_batch: [1]"], 5, ["provider.max_batch: must be an integer, got a list"]),
        ("rfc2136", ["server: 127.0.0.1", "max_batch: 10001"], 5, ["provider.max_batch: must be within 1..10000"]),
        ("rfc2136", ["server: {a: 1}"], 4, ["provider.server: must be text, got a mapping"]),
        ("rfc2136", ["server: ' '"], 4, ["provider.server: must be an IP address"]),
        ("route53", ["hosted_zone_id: Z1", "wait_insync: yes please"], 5,
         ["provider.wait_insync: must be true or false, got 'yes please'"]),
        ("route53", ["hosted_zone_id: ''"], 4, ["provider.hosted_zone_id: must not be empty"]),
        # a missing required option: the provider block's line, the option and what it is for
        ("rfc2136", ["port: 53"], 3, ["provider (rfc2136): missing required key 'server' (the primary server"]),
        ("route53", [], 3, ["missing required key 'hosted_zone_id' (the hosted zone's id"]),
    ],
)
def test_a_bad_option_names_file_line_and_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, options: list[str], line: int, fragments: list[str]
) -> None:
    f = fleet_file(tmp_path, kind, *options)
    err = refused(f)
    assert (err.path, err.line) == (str(f), line), str(err)
    for fragment in fragments:
        assert fragment in str(err), str(err)
    assert main(["validate", str(f)]) == 2  # the CLI: exit 2, the same file:line message, no traceback
    out = capsys.readouterr().err.replace("\n", " ")
    assert f"fleet.yaml:{line}" in out and "Traceback" not in out


def test_the_block_becomes_the_kinds_typed_config(tmp_path: Path) -> None:
    f = fleet_file(tmp_path, "rfc2136", "server: ' 127.0.0.1 '", "port: 5300", "key_file: k.key", "key_name: k",
                   "timeout: 2", "max_batch: 50", "max_records_per_type: 200")
    assert load_fleet(f).provider == Rfc2136Config(
        server="127.0.0.1", port=5300, key_file=str(tmp_path / "k.key"), key_name="k", timeout=2.0, max_batch=50,
        max_records_per_type=200)
    f = fleet_file(tmp_path, "route53", "hosted_zone_id: /hostedzone/Z1", "region: eu-west-1",
                   "endpoint_url: http://127.0.0.1:4566", "wait_insync: true")
    assert load_fleet(f).provider == Route53Config("/hostedzone/Z1", "eu-west-1", "http://127.0.0.1:4566", True)
    assert load_fleet(fleet_file(tmp_path, "embedded")).provider == EmbeddedConfig()
    assert parse_fleet("zone: demo.test\ntargets:\n  lb-1: {addresses: [192.0.2.1]}\n"
                       "endpoints:\n  - {name: api, ttl: 30, targets: [lb-1]}\n").provider == EmbeddedConfig()


def test_a_default_written_out_is_the_same_config(tmp_path: Path) -> None:
    """What the fleet means, not how it is written: ``port: 53`` is the default (a reload compares configs)."""
    plain = load_fleet(fleet_file(tmp_path, "rfc2136", "server: 127.0.0.1")).provider
    assert load_fleet(fleet_file(tmp_path, "rfc2136", "server: 127.0.0.1", "port: 53")).provider == plain
    assert plain.options == (("server", "127.0.0.1"),)


@pytest.mark.parametrize("config", [
    EmbeddedConfig(),
    Rfc2136Config("127.0.0.1"),
    Rfc2136Config("::1", 5300, key_file="/k.key", key_name="k", timeout=0.5, max_batch=7, max_records_per_type=9),
    Route53Config("Z1"),
    Route53Config("Z1", "eu-west-1", "http://127.0.0.1:4566", True),
])
def test_options_rebuild_the_same_config(config: EmbeddedConfig | Rfc2136Config | Route53Config) -> None:
    """``instance.json`` keeps ``options``; ``status`` rebuilds the provider the instance opened from them."""
    assert config_of(config.kind, dict(config.options)) == config


@pytest.mark.parametrize(("kind", "options", "fragment"), [
    ("bind", {}, "unknown provider kind 'bind'"),
    ("rfc2136", {"server": "127.0.0.1", "prot": 1}, "unknown options prot"),
    ("rfc2136", {}, "missing required options server"),
    ("rfc2136", {"server": "127.0.0.1", "port": "53"}, "port: must be an integer, got '53'"),
    ("rfc2136", {"server": "127.0.0.1", "port": 0}, "port: must be within 1..65535, got 0"),
    ("rfc2136", {"server": "ns1.example"}, "server: must be an IP address"),
    ("route53", {"hosted_zone_id": "Z1", "wait_insync": 1}, "wait_insync: must be true or false"),
])
def test_a_config_built_in_code_is_checked_too(kind: str, options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        config_of(kind, options)


def test_the_runtime_opens_providers_from_the_typed_config(tmp_path: Path) -> None:
    from dnsplane.providers.embedded import EmbeddedProvider
    from dnsplane.providers.rfc2136 import Rfc2136Provider
    from dnsplane.providers.route53 import Route53Provider

    fleet = load_fleet(fleet_file(tmp_path, "rfc2136", "server: 127.0.0.1", "port: 5300", "key_file: k.key",
                                  "timeout: 2", "max_batch: 50"))
    rfc = open_provider(fleet, tmp_path)
    try:
        assert isinstance(rfc, Rfc2136Provider)
        assert (rfc.server, rfc.port, rfc.timeout, rfc.capabilities.max_batch) == ("127.0.0.1", 5300, 2.0, 50)
        assert rfc.key_name == "k."
        assert dns_view(fleet, ("127.0.0.1", 5353)) == ("127.0.0.1", 5300)
    finally:
        rfc.close()
    fleet = load_fleet(fleet_file(tmp_path, "route53", "hosted_zone_id: /hostedzone/Z1",
                                  "endpoint_url: http://127.0.0.1:9", "wait_insync: true"))
    r53 = open_provider(fleet, tmp_path)
    assert isinstance(r53, Route53Provider)
    assert (r53.hosted_zone_id, r53.wait_insync, r53.client.meta.endpoint_url) == ("Z1", True, "http://127.0.0.1:9")
    assert dns_view(fleet, ("127.0.0.1", 5353)) is None
    fleet = load_fleet(fleet_file(tmp_path, "embedded"))
    emb = open_provider(fleet, tmp_path)
    try:
        assert isinstance(emb, EmbeddedProvider) and emb.path == str(tmp_path / "dns.sqlite")
        assert dns_view(fleet, ("127.0.0.1", 5353)) == ("127.0.0.1", 5353)
    finally:
        emb.close()


def documented_options(text: str) -> dict[str, list[set[str]]]:
    """The option names each ``provider:`` example in a Markdown file's YAML blocks lists, by kind."""
    found: dict[str, list[set[str]]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        for example in re.findall(r"^provider:\n((?:  .*\n?)+)", block, re.M):
            keys = dict(re.findall(r"^  (\w+):\s*([^#\s]*)", example, re.M))
            found.setdefault(keys.pop("kind"), []).append(set(keys))
    return found


@pytest.mark.parametrize(("doc", "kinds"), [
    ("fleet-file.md", ("embedded", "rfc2136", "route53")),
    ("providers/rfc2136.md", ("rfc2136",)),
    ("providers/route53.md", ("route53",)),
])
def test_the_docs_list_exactly_each_kinds_options(doc: str, kinds: tuple[str, ...]) -> None:
    """Option names are defined once (the classes' fields); the docs' examples list every one, no other."""
    examples = documented_options((DOCS / doc).read_text())
    assert set(examples) == set(kinds)
    for kind in kinds:
        assert any(keys == set(option_fields(CONFIGS[kind])) for keys in examples[kind]), (kind, examples[kind])
        assert all(keys <= set(option_fields(CONFIGS[kind])) for keys in examples[kind]), (kind, examples[kind])
