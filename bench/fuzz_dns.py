"""Coverage-guided fuzzing of the embedded server's packet path, 10^6 inputs per run (issue 11, part 6).

    pip install -e '.[fuzz]'                         # atheris (libFuzzer for Python)
    python bench/fuzz_dns.py                         # both parts below, 10^6 inputs each
    python bench/fuzz_dns.py atheris --runs 1000000  # only the coverage-guided part
    python bench/fuzz_dns.py wire --packets 1000000  # only the packets over the wire

``atheris``: libFuzzer drives ``Responder.handle`` (UDP and TCP limits) and the TCP framing of
``TcpConnection`` (a stream cut into chunks) in this process, with dnsplane.dns instrumented for
coverage (not dnspython: see run_atheris), starting from a corpus of real dig/kdig queries and
queries built from the zone's names (tests/dns/test_fuzz_packets.py). Every input is checked with
the invariants of that test module (``check_response``, ``check_tcp``; ``check_edns`` too with
``--edns``, which fails on today's code until issue 11's part 5 is in); a broken invariant or an
exception is a crash: libFuzzer writes the input to ``crash-<sha1>`` in the current directory and
stops; make it a regression test in tests/dns/test_fuzz_packets.py. Prints this process's RSS after
the first input and after the last one. About 1,400 inputs/s on a loaded 2-core machine: 10^6 in 12 min.

``wire``: the same kinds of packets (the corpus, mutated in Python: bit flips, insertions,
deletions, truncations, random bytes) sent over UDP to a ``DnsServer`` in a child process of its
own, in windows of 64 closed by a real query whose answer is awaited (so nothing is lost to full
socket buffers and no sleep is needed), plus every 100th packet over TCP; the server's RSS before
and after, its answers counted, and a check that it still answers a normal query at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.dns.*


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def seed_corpus(directory: Path, built: int = 200) -> int:
    """Real queries plus ``built`` queries from the zone's names (several shapes); the number of files."""
    import dns.flags
    import dns.message

    from tests.dns.test_fuzz_packets import NAMES, QTYPES, REAL_QUERIES

    rnd = random.Random(11)
    seeds = [b"\x00" + q for q in REAL_QUERIES] + [b"\x01" + q for q in REAL_QUERIES]
    for i in range(built):
        q = dns.message.make_query(rnd.choice(NAMES), rnd.choice(QTYPES) or 1, use_edns=rnd.choice([None, 0]))
        if rnd.random() < 0.3:
            q.want_dnssec(True)
        if rnd.random() < 0.2:
            q.flags |= dns.flags.CD
        mode = i % 3
        wire = q.to_wire()
        if mode == 2:  # a TCP stream: two framed queries
            wire = struct.pack("!H", len(wire)) + wire + struct.pack("!H", len(wire)) + wire
        seeds.append(bytes([mode + 3 * rnd.randrange(16)]) + wire)
    for i, s in enumerate(seeds):
        (directory / f"seed-{i:04d}").write_bytes(s)
    return len(seeds)


def run_atheris(runs: int, corpus: Path | None, max_len: int, edns: bool) -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]'")
    # dnsplane.dns only: instrumenting dnspython too (its parser is the slow path's) made each input
    # about 2.5 times slower, mostly in the invariant checks, which parse every query and response
    with atheris.instrument_imports(include=["dnsplane.dns"]):
        from dnsplane.dns.responder import Responder  # noqa: F401  (instrumented before the tests import it)
        from dnsplane.dns.server import DnsServer  # noqa: F401
    from tests.dns.test_fuzz_packets import check_edns, check_response, check_tcp, make_responder, make_server

    responder = make_responder()
    server = make_server()
    server.refresh()
    state = {"n": 0, "rss0": 0, "t0": 0.0}

    def one_input(data: bytes) -> None:
        n = state["n"] = state["n"] + 1
        if n == 1:
            state["rss0"], state["t0"] = rss_kb(), time.monotonic()
            print(f"#fuzz_dns RSS after the first input: {state['rss0'] / 1024:.1f} MB", flush=True)
        if not data:
            return
        mode, body = data[0] % 3, data[1:]
        if mode == 2:  # TCP framing, the stream cut every 1..16 bytes
            step = 1 + data[0] // 3 % 16
            check_tcp(server, body, [body[i : i + step] for i in range(0, len(body), step)])
        else:
            udp = mode == 0
            resp = responder.handle(body, udp)
            check_response(body, resp, udp)
            if edns:
                check_edns(body, resp)
        if n == runs:
            dt = time.monotonic() - state["t0"]
            report = {
                "inputs": n,
                "seconds": round(dt, 1),
                "inputs_per_s": round(n / dt),
                "rss_first_mb": round(state["rss0"] / 1024, 1),
                "rss_last_mb": round(rss_kb() / 1024, 1),
                "responder": {k: v for k, v in vars(responder.stats).items() if k != "responses"},
                "responses": dict(responder.stats.responses),
            }
            print("#fuzz_dns " + json.dumps(report), flush=True)

    with tempfile.TemporaryDirectory(prefix="fuzz_dns.") as tmp:
        seeds = Path(tmp) / "seeds"
        seeds.mkdir()
        seed_corpus(seeds)
        dirs = [str(corpus)] if corpus is not None else []
        if corpus is not None:
            corpus.mkdir(parents=True, exist_ok=True)
        argv = [sys.argv[0], f"-runs={runs}", f"-max_len={max_len}", "-print_final_stats=1", *dirs, str(seeds)]
        atheris.Setup(argv, one_input)
        atheris.Fuzz()


# --- over the wire -----------------------------------------------------------------
def serve_child() -> None:
    """Child process: a DnsServer over the test zone; prints its port, runs until stdin closes."""
    from dnsplane.dns import DnsServer
    from tests.dns.test_server import ZONE, FakeSource, initial_data

    async def main() -> None:
        server = DnsServer([FakeSource(ZONE, initial_data())], "127.0.0.1", 0)
        await server.start()
        print(json.dumps({"port": server.port}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        stats = {k: v for k, v in vars(server.stats).items() if k != "responses"}
        print(json.dumps({"stats": stats, "responses": dict(server.stats.responses)}), flush=True)
        await server.stop()

    asyncio.run(main())


def mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(6)
        pos = rnd.randint(0, len(b))
        if kind == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif kind == 1:
            b[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif kind == 2:
            del b[pos : pos + rnd.randint(1, 8)]
        elif kind == 3:
            del b[pos:]
        elif kind == 4 and len(b) > 4:
            b[rnd.randrange(len(b))] = rnd.choice([0, 0xFF, 0x3F, 0xC0, 0x40, 0x29])
        else:
            b += rnd.randbytes(rnd.randint(1, 16))
    return bytes(b)


def run_wire(packets: int, seed: int) -> dict[str, object]:
    import dns.message

    from tests.dns.test_fuzz_packets import REAL_QUERIES

    rnd = random.Random(seed)
    base = list(REAL_QUERIES)
    for name in ("api.demo.test.", "w.demo.test.", "big.demo.test.", "nx.demo.test.", "outside.example."):
        for rdtype in ("A", "AAAA", "TXT", "ANY", "SOA", "AXFR", "OPT"):
            base.append(dns.message.make_query(name, rdtype, use_edns=rnd.choice([None, 0])).to_wire())
    child = subprocess.Popen(
        [sys.executable, __file__, "_serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    port = json.loads(child.stdout.readline())["port"]
    probe = dns.message.make_query("api.demo.test.", "A")
    answers = sent_tcp = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(5.0)

        def sync(qid: int) -> None:
            nonlocal answers
            probe.id = qid
            s.send(probe.to_wire())
            while True:
                reply = s.recv(65535)
                if reply[:2] == struct.pack("!H", qid) and len(reply) > 12 and reply[2] & 0x80 and reply[12:13]:
                    try:
                        if dns.message.from_wire(reply).question[0].name == probe.question[0].name:
                            return
                    except Exception:  # a fuzzed packet's reply with the same ID: keep reading
                        pass
                answers += 1

        sync(0)
        rss0 = rss_kb(child.pid)
        t0 = time.monotonic()
        window = 64
        for i in range(packets):
            pkt = mutate(rnd.choice(base), rnd) if rnd.random() < 0.9 else rnd.randbytes(rnd.randint(0, 80))
            if i % 100 == 99:
                sent_tcp += 1
                with socket.create_connection(("127.0.0.1", port), timeout=5.0) as t:
                    t.sendall(struct.pack("!H", len(pkt)) + pkt)
                    t.shutdown(socket.SHUT_WR)
                    while t.recv(65535):
                        pass
            else:
                s.send(pkt)
            if i % window == window - 1:
                sync(rnd.randrange(65536))
        sync(1)
        dt = time.monotonic() - t0
        rss1 = rss_kb(child.pid)
        r = dns.message.from_wire(_ask(port, probe))
        ok = r.rcode() == 0 and bool(r.answer)
    child.stdin.close()
    final = json.loads(child.stdout.readline())
    child.wait(15)
    return {
        "packets": packets,
        "tcp_packets": sent_tcp,
        "seconds": round(dt, 1),
        "packets_per_s": round(packets / dt),
        "udp_answers_seen": answers,
        "server_rss_before_mb": round(rss0 / 1024, 1),
        "server_rss_after_mb": round(rss1 / 1024, 1),
        "still_answers": ok,
        "server": final,
    }


def _ask(port: int, q: object) -> bytes:
    import dns.message

    assert isinstance(q, dns.message.Message)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        q.id = 4242
        s.sendto(q.to_wire(), ("127.0.0.1", port))
        while True:
            reply = s.recv(65535)
            if reply[:2] == b"\x10\x92":
                return reply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", nargs="?", choices=["all", "atheris", "wire", "_serve"], default="all")
    ap.add_argument("--runs", type=int, default=1_000_000, help="atheris: inputs")
    ap.add_argument("--packets", type=int, default=1_000_000, help="wire: packets")
    ap.add_argument("--corpus", type=Path, help="atheris: a corpus directory to keep (grows with new coverage)")
    ap.add_argument("--max-len", type=int, default=600)
    ap.add_argument(
        "--edns", action="store_true", help="atheris: also check_edns (OPT back, DO copied: issue 11 part 5)"
    )
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    if args.part == "_serve":
        serve_child()
    elif args.part == "wire":
        print("#fuzz_dns wire " + json.dumps(run_wire(args.packets, args.seed)), flush=True)
    elif args.part == "atheris":
        run_atheris(args.runs, args.corpus, args.max_len, args.edns)
    else:  # libFuzzer ends the process when it is done: the wire part first, atheris in a child
        print("#fuzz_dns wire " + json.dumps(run_wire(args.packets, args.seed)), flush=True)
        argv = [sys.executable, __file__, "atheris", f"--runs={args.runs}", f"--max-len={args.max_len}"]
        if args.corpus is not None:
            argv.append(f"--corpus={args.corpus}")
        if args.edns:
            argv.append("--edns")
        sys.exit(subprocess.call(argv, env=os.environ))


if __name__ == "__main__":
    main()
