"""Model fidelity: every place the running system calls the store, a provider or DNS has a row in
``docs/model-fidelity.md``, which says which step of the simulator and the explorer it corresponds to.

The calls are found in the source by their shape (``discover``), not listed here by hand: an attribute
call on anything named ``store`` or ``provider`` (``store.head()``, ``self.provider.read(...)``,
``ex.store.begin(...)``), a call of a ``resolver``, a ``dns.query``/``dns.asyncquery`` call, opening a
store, a provider or the DNS server (``SqliteStore(...)``, ``open_provider``, ``DnsServer``), an
``<...>.interpreter.run`` call, and what ``asyncio.to_thread`` runs (the runtime's await points). A new
call that the table does not list fails here, naming its file and line; so does a row that names a
call or a command class that no longer exists. The command classes' rows are checked more closely: the
``execute.py`` handler of each class must make exactly the store/provider calls its row lists.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from dnsplane.protocol.messages import EFFECT_CLASSES, REQUEST_CLASSES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "model-fidelity.md"
EXECUTE = "dnsplane/execute.py"
SCANNED = (EXECUTE, "dnsplane/cli.py", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "dnsplane" / "runtime").glob("*.py")))
RECEIVERS = {"store", "provider"}  # the last name of a receiver whose method calls count
DNS_MODULES = ("dns.query.", "dns.asyncquery.")
OPENERS = ("Store", "Provider", "DnsServer")  # opening a store or a provider reads (and may write) it too

Found = dict[tuple[str, str], list[int]]  # (file, call) -> lines


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def call_key(call: ast.Call) -> str | None:
    """What the table calls this call, or None if it is not one the table must list."""
    name = dotted(call.func)
    if name is None:
        return None
    parts = name.split(".")
    if name in ("asyncio.to_thread", "to_thread") and call.args:
        target = dotted(call.args[0])
        return None if target is None else "to_thread " + ".".join(target.split(".")[-2:]).removeprefix("self.")
    if name.startswith(DNS_MODULES):
        return name
    if parts[-1].endswith(OPENERS) or parts[-1] == "open_provider":
        return parts[-1]
    if parts[-1] == "resolver" and len(parts) > 1:
        return "resolver"
    if len(parts) >= 2 and parts[-2] in RECEIVERS:
        return f"{parts[-2]}.{parts[-1]}"
    if len(parts) >= 2 and parts[-2:] == ["interpreter", "run"]:
        return "interpreter.run"
    return None


def discover(path: str, source: str | None = None) -> tuple[Found, dict[str, set[str]]]:
    """The calls in ``path`` (or in ``source``, given as that file): (file, call) -> lines; and, per
    function, the calls made in it (for ``execute.py``'s handlers)."""
    tree = ast.parse(source if source is not None else (ROOT / path).read_text(), path)
    found: Found = defaultdict(list)
    per_function: dict[str, set[str]] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            per_function[fn.name] = {k for n in ast.walk(fn) if isinstance(n, ast.Call) and (k := call_key(n))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (key := call_key(node)) is not None:
            found[(path, key)].append(node.lineno)
    return found, per_function


def handler_table(source: str) -> dict[str, str]:
    """``execute.py``'s ``_HANDLERS``: command class name -> handler function name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "_HANDLERS" for t in targets):
                return {k.id: v.id for k, v in zip(node.value.keys, node.value.values, strict=True)
                        if isinstance(k, ast.Name) and isinstance(v, ast.Name)}
    raise AssertionError(f"{EXECUTE}: no _HANDLERS table found")


ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)$")


def table_rows(text: str) -> tuple[dict[str, int], dict[str, tuple[set[str], int]]]:
    """The doc's rows: call rows (``file: call`` -> doc line; a row may name several calls of one file,
    ``file: call, call``) and command rows (class -> (the calls its second column names in backticks,
    doc line)). A row is a table line whose first cell is one backticked name."""
    calls: dict[str, int] = {}
    commands: dict[str, tuple[set[str], int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = ROW.match(line.strip())
        if m is None:
            continue
        name, rest = m.group(1).strip(), m.group(2)
        if ": " in name:  # `file: call, call, ...`
            path, _, keys = name.partition(": ")
            for key in keys.split(", "):
                calls[f"{path}: {key.strip()}"] = n
        else:
            second = rest.split("|", 1)[0]
            commands[name] = (set(re.findall(r"`([^`]+)`", second)), n)
    return calls, commands


def problems(sources: dict[str, str] | None = None, doc: str | None = None) -> list[str]:
    """Everything the table misses or lists in vain. ``sources`` (path -> text) replaces files read
    from the tree, for the test of this test."""
    sources = {p: (ROOT / p).read_text() for p in SCANNED} | (sources or {})
    calls, commands = table_rows(doc if doc is not None else DOC.read_text())
    out: list[str] = []
    found: Found = {}
    handlers = handler_table(sources[EXECUTE])
    handler_names = set(handlers.values())
    for path, text in sorted(sources.items()):
        calls_here, per_function = discover(path, text)
        if path == EXECUTE:
            # the handlers' calls are checked against their command's row; the rest as any file's
            in_handlers = {k for f in handler_names for k in per_function.get(f, ())}
            outside = {k for f, ks in per_function.items() if f not in handler_names for k in ks}
            for cls, fn in sorted(handlers.items()):
                made = per_function.get(fn, set())
                if cls not in commands:
                    continue  # reported below, with every command class
                listed = commands[cls][0]
                for key in sorted(made - listed):
                    out.append(f"{EXECUTE}: {fn} (the handler of {cls}) calls {key}, not listed in the {cls} row "
                               f"of {DOC.name} (line {commands[cls][1]})")
                for key in sorted(listed - made):
                    out.append(f"{DOC.name}:{commands[cls][1]}: the {cls} row lists {key}, which {fn} no longer calls")
            calls_here = {pk: lines for pk, lines in calls_here.items() if pk[1] in outside or pk[1] not in in_handlers}
        found.update(calls_here)
    for (path, key), lines in sorted(found.items()):
        if f"{path}: {key}" not in calls:
            where = ", ".join(f"{path}:{n}" for n in lines)
            out.append(f"{where}: {key} is a store/provider/DNS call that {DOC.name} does not list "
                       f"(add a row `{path}: {key}`)")
    named = {f"{p}: {k}" for p, k in found}
    for row, n in sorted(calls.items()):
        if row not in named:
            out.append(f"{DOC.name}:{n}: row `{row}` names a call that no longer exists")
    classes = {c.__name__ for c in (*EFFECT_CLASSES, *REQUEST_CLASSES)}
    for cls in sorted(classes - set(commands)):
        out.append(f"dnsplane.protocol.messages: {cls} has no row in {DOC.name}")
    for cls in sorted(set(commands) - classes):
        out.append(f"{DOC.name}:{commands[cls][1]}: row `{cls}` names no command class of the protocol")
    return out


def test_every_runtime_call_has_a_row_and_every_row_a_call() -> None:
    found = problems()
    assert not found, "docs/model-fidelity.md is out of date:\n" + "\n".join(found)


def test_the_check_sees_a_new_call_a_changed_handler_and_a_stale_row() -> None:
    app = "dnsplane/runtime/app.py"
    text = (ROOT / app).read_text()
    added = text + "\n\ndef _extra(app):\n    app.store.plans()\n    app.provider.read_all()\n"
    found = problems({app: added})
    assert any(f"{app}: store.plans" in p and "does not list" in p for p in found), found
    assert any(f"{app}: provider.read_all" in p for p in found), found
    ex = (ROOT / EXECUTE).read_text().replace("    ex.store.begin(actor, cmd.generation, now)",
                                               "    ex.store.head()\n    ex.store.begin(actor, cmd.generation, now)")
    assert any("_begin (the handler of Begin) calls store.head" in p for p in problems({EXECUTE: ex}))
    doc = DOC.read_text() + "\n| `dnsplane/runtime/app.py: store.vanished` | x |\n| `NoSuchCommand` | x |\n"
    found = problems(doc=doc)
    assert any("store.vanished` names a call that no longer exists" in p for p in found), found
    assert any("`NoSuchCommand` names no command class" in p for p in found), found
