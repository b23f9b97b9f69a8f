"""Dependencies point inward: checked on the source (ast), including imports inside functions."""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "application", "projections", "infrastructure", "api")
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Import:
    module: str  # dotted, absolute
    path: Path
    line: int

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path if path.name == "__init__.py" else path.parent, root)
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(a.name, path, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "__future__":
                continue
            found.append(Import(module, path, node.lineno))
            # ``from x import y`` may import the submodule x.y.
            found += [Import(f"{module}.{a.name}", path, node.lineno) for a in node.names]
    return found


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def _layer_imports(layer: str) -> list[Import]:
    return [i for path in _modules(layer) for i in _imports(path)]


def _violations(layer: str, forbidden: set[str]) -> list[str]:
    return [str(i) for i in _layer_imports(layer) if i.top in forbidden]


def test_every_layer_has_modules_that_parse() -> None:
    for layer in LAYERS:
        modules = _modules(layer)
        assert modules, layer
        for path in modules:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_checker_resolves_relative_and_nested_imports(tmp_path: Path) -> None:
    module = tmp_path / "projections" / "customer_profile" / "projection.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from ..engine import catch_up\nfrom . import queries\ndef f():\n    import api.app\n"
    )

    found = {i.module for i in _imports(module, tmp_path)}

    assert {"projections.engine", "projections.customer_profile.queries", "api.app"} <= found


def test_domain_imports_nothing_from_outer_layers() -> None:
    assert _violations("domain", {"application", "infrastructure", "projections", "api"}) == []


def test_domain_uses_only_the_stdlib_and_eventsourcing_domain() -> None:
    outside = [
        str(i)
        for i in _layer_imports("domain")
        if i.top not in STDLIB
        and i.top != "domain"
        and not (i.module == "eventsourcing.domain" or i.module.startswith("eventsourcing.domain."))
    ]
    assert outside == []


IO_MODULES = {
    "psycopg", "psycopg_pool", "redis", "litestar", "httpx", "requests", "urllib",
    "socket", "pgserver", "sqlite3", "subprocess", "structlog", "logging", "asyncio",
    "uvicorn", "anyio",
}  # fmt: skip


def test_domain_does_no_io() -> None:
    imported = [str(i) for i in _layer_imports("domain") if i.top in IO_MODULES]
    environment: list[str] = []
    for path in _modules("domain"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                environment.append(f"{path}:{node.lineno} uses os.{node.attr}")
            if isinstance(node, ast.Name) and node.id in {"open", "environ", "getenv", "input"}:
                environment.append(f"{path}:{node.lineno} uses {node.id}")
    assert imported == []
    assert environment == []


CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "uuid1", "uuid4"}


def test_domain_reads_no_clock_and_no_randomness() -> None:
    # Event bodies re-run on replay: time and ids are passed in, never read or drawn here.
    reads = [str(i) for i in _layer_imports("domain") if i.top in {"random", "secrets", "time"}]
    for path in _modules("domain"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else None
            )
            if name in CLOCK_CALLS:
                reads.append(f"{path}:{node.lineno} calls {name}()")
    assert reads == []


# Pure normalisation libraries (no I/O: email_validator is only called without its DNS check).
PURE_LIBRARIES = {"phonenumbers", "email_validator"}


def test_application_imports_only_domain_stdlib_eventsourcing_msgspec_and_pure_libraries() -> None:
    allowed = STDLIB | {"application", "domain", "eventsourcing", "msgspec"} | PURE_LIBRARIES
    assert [str(i) for i in _layer_imports("application") if i.top not in allowed] == []


def test_the_application_never_asks_email_validator_to_look_up_dns() -> None:
    calls = [
        node
        for path in _modules("application")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "validate_email"
    ]
    assert calls
    for call in calls:
        flags = {k.arg: k.value for k in call.keywords}
        assert isinstance(flags.get("check_deliverability"), ast.Constant)
        assert flags["check_deliverability"].value is False


def test_projections_do_not_import_the_api() -> None:
    assert _violations("projections", {"api"}) == []


def test_infrastructure_imports_the_api_only_from_the_cli() -> None:
    offenders = [
        str(i)
        for i in _layer_imports("infrastructure")
        if i.top == "api" and i.path != ROOT / "infrastructure" / "cli.py"
    ]
    assert offenders == []


def test_only_runtime_and_cli_in_infrastructure_import_projections() -> None:
    roots = {ROOT / "infrastructure" / "runtime.py", ROOT / "infrastructure" / "cli.py"}
    offenders = [
        str(i)
        for i in _layer_imports("infrastructure")
        if i.top == "projections" and i.path not in roots
    ]
    assert offenders == []


@pytest.mark.parametrize("layer", ["domain", "application", "projections", "infrastructure"])
def test_no_inner_layer_imports_the_tests(layer: str) -> None:
    assert _violations(layer, {"tests", "pytest", "hypothesis"}) == []


# -- import cycles ----------------------------------------------------------------------------

PACKAGES = (*LAYERS, "bench")


def _graph(root: Path, packages: Sequence[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in it, functions and
    ``TYPE_CHECKING`` blocks included: a lazy import hides a cycle, it does not remove it)."""
    paths = {
        _module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
    }
    return {
        name: {i.module for i in _imports(path, root) if i.module in paths} - {name}
        for name, path in paths.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "application"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from application.b import f\n")
    (pkg / "b.py").write_text("from . import c\ndef f():\n    pass\n")
    (pkg / "c.py").write_text("def g():\n    from application import a\n")
    (pkg / "d.py").write_text("import application.a\n")

    found = _cycles(_graph(tmp_path, ["application"]))

    assert found == [frozenset({"application.a", "application.b", "application.c"})]


def test_no_import_cycles_among_the_project_modules() -> None:
    cycles = _cycles(_graph(ROOT, PACKAGES))
    assert [sorted(c) for c in cycles] == []
