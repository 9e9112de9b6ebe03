"""Fail on private access to, or monkeypatching of, code we do not own (run by `make lint`).

Django, asgiref, asyncio, uvicorn, daphne, the MCP SDK and every other library are used through their
public APIs only, so that upgrading one is not an audit (issue 15). Read from the source (AST), this
reports:

1. `x._name` where `_name` (not a dunder) is defined nowhere in our own code: a private attribute of a
   library object (`manager._server_instances`, `executor._threads`, `asyncio.events._set_running_loop`),
   and `super()._name(…)`: an override of a base class's private method;
2. imports of private modules or names from a library (`from mcp.server._otel import …`);
3. monkeypatches: assigning to an attribute of an imported library module or object, or handing one
   (or anything derived from one, such as `type(connections["default"])`, or a library module reached
   through one of ours, such as `authentication.time`) to `setattr` / `delattr` / pytest's
   `monkeypatch.setattr` / `mock.patch.object`; and `mock.patch("our.module.library_object.attr")`.

Exceptions live in tools/private_access_allowlist.txt, one per line with the reason: an attribute name
(`_meta`), or the pattern of a documented configuration assignment (`resend.api_*`). Keep it short.

    .venv/bin/python tools/check_private_access.py [paths…]
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("agents", "channels_app", "orchestrator", "admin_ui", "voice", "tests", "bench", "tools")
SCANNED = (*FIRST_PARTY, "manage.py")
ALLOWLIST = ROOT / "tools" / "private_access_allowlist.txt"


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.message}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_first_party(module: str | None, level: int = 0) -> bool:
    return level > 0 or module is None or module.split(".")[0] in FIRST_PARTY


def python_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*.py")) if "migrations" not in p.parts)
        elif path.suffix == ".py":
            yield path


def own_names(trees: Iterable[ast.AST]) -> set[str]:
    """Every private name our code defines: functions, classes, variables, attributes it assigns,
    parameters, __slots__ entries."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _root(node) in ("self", "cls"):
                names.add(node.attr)  # an attribute of our own class (not one we set on a library's object)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)  # __slots__ entries, setattr() names, keyword-built attributes
    return {name for name in names if _is_private(name)}


def _library_names(tree: ast.Module) -> set[str]:
    """Names a module binds to library modules or objects by importing them."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_first_party(alias.name):
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and not _is_first_party(node.module, node.level):
            bound.update(alias.asname or alias.name for alias in node.names)
    return bound


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_super_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _first_party_modules(tree: ast.Module) -> dict[str, str]:
    """Names a module binds to our own modules: `from agents import authentication` → agents.authentication."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_first_party(node.module):
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_first_party(alias.name) and alias.asname:
                    bound[alias.asname] = alias.name
    return bound


def _reaches_library(node: ast.AST, library: set[str], ours: dict[str, str], modules: dict[str, ast.Module]) -> bool:
    """Whether an expression names a library object: a library import anywhere in it, or an attribute of
    one of our modules that the module imported from a library (`authentication.time`)."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name) and inner.id in library:
            return True
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id in ours:
            module = modules.get(ours[inner.value.id])
            if module is not None and inner.attr in _library_names(module):
                return True
    return False


def _patch_target_is_library(target: str, modules: dict[str, ast.Module]) -> bool:
    """`mock.patch("pkg.module.name.attr")`: true when `name` is a library object the module imported and
    the patch replaces one of its attributes (replacing `pkg.module.name` itself only rebinds our global)."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = modules.get(".".join(parts[:split]))
        if module is not None:
            rest = parts[split:]
            return len(rest) > 1 and rest[0] in _library_names(module)
    return False


def check(path: Path, tree: ast.Module, own: set[str], allowed: set[str],
          modules: dict[str, ast.Module] | None = None) -> Iterator[Finding]:
    modules = modules or {}
    library = _library_names(tree)
    ours = _first_party_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            level = node.level if isinstance(node, ast.ImportFrom) else 0
            if isinstance(node, ast.ImportFrom) and not _is_first_party(module, level):
                assert module is not None
                parts = [*module.split("."), *(alias.name for alias in node.names)]
                private = [part for part in parts if _is_private(part) and part not in allowed]
                if private:
                    yield Finding(path, node.lineno, f"imports private {'.'.join(private)} from {module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    private = [p for p in alias.name.split(".") if _is_private(p) and p not in allowed]
                    if private and not _is_first_party(alias.name):
                        yield Finding(path, node.lineno, f"imports private module {alias.name}")
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in allowed \
                and ast.unparse(node) not in allowed:
            if node.attr not in own:
                yield Finding(path, node.lineno, f"private attribute .{node.attr} of code we do not own")
            elif _is_super_call(node.value):
                # Our class overrides a private method of its base and calls the base's: a library's private API.
                yield Finding(path, node.lineno, f"calls the base class's private .{node.attr} (super())")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in library:
                    dotted = ast.unparse(target)
                    if not any(fnmatch.fnmatchcase(dotted, pattern) for pattern in allowed):
                        yield Finding(path, node.lineno, f"monkeypatches {_root(target)} (assigns {dotted})")
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            dotted_call = ast.unparse(function)
            if (name in ("setattr", "delattr") or dotted_call.endswith("patch.object")) \
                    and _reaches_library(node.args[0], library, ours, modules):
                yield Finding(path, node.lineno, f"monkeypatches {ast.unparse(node.args[0])} ({name})")
            elif (dotted_call == "patch" or dotted_call.endswith(".patch")) and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str) and _patch_target_is_library(node.args[0].value, modules):
                yield Finding(path, node.lineno, f"monkeypatches {node.args[0].value} (mock.patch)")


def load_allowlist() -> set[str]:
    allowed: set[str] = set()
    for line in ALLOWLIST.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            allowed.add(entry)
    return allowed


def main(argv: list[str]) -> int:
    paths = [Path(arg).resolve() for arg in argv] or [ROOT / name for name in SCANNED]
    everything = {path: ast.parse(path.read_text(), str(path)) for path in python_files(ROOT / n for n in SCANNED)}
    own = own_names(everything.values())
    modules = {_module_name(path): tree for path, tree in everything.items()}
    allowed = load_allowlist()
    findings = [
        finding
        for path in python_files(paths)
        for finding in check(path, everything.get(path) or ast.parse(path.read_text(), str(path)), own, allowed, modules)
    ]
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} private access(es) or monkeypatch(es) of code we do not own; use a public API, "
              f"or justify the name in {ALLOWLIST.relative_to(ROOT)}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
