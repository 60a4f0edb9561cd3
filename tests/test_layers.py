from __future__ import annotations

import ast
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parent.parent / "hub"
# Every module of hub/ is in exactly one layer. Data flows one way: edges -> services ->
# stores; the wire format is shared by the edges (and the events services write).
LAYERS = {
    "edge": {"api", "ws", "listener"},
    "entry": {"__main__", "app", "client", "collector", "loadtest", "workers"},
    "wire": {"protocol", "schemas", "asyncapi"},
    "service": {
        "access",
        "accounts",
        "appointments",
        "auth",
        "audit",
        "availability",
        "booking",
        "calendar",
        "catalog",
        "clinic",
        "events",
        "feeds",
        "idempotency",
        "ledger",
        "standing",
        "lifecycle",
        "manage",
        "outbox",
        "privacy",
        "relay",
        "renewal",
        "schedules",
        "throttle",
        "visits",
        "waitlist",
        "notices",
        "preferences",
        "sender",
        "letters",
        "invites",
        "links",
        "addresses",
        "health",
    },
    "store": {"bus", "db", "driver", "holds", "models", "constraints", "migrations", "mail"},
    "support": {
        "__init__",
        "clock",
        "config",
        "errors",
        "logs",
        "logformat",
        "metrics",
        "runtime",
        "state",
    },
}
LAYER = {name: layer for layer, names in LAYERS.items() for name in names}


def _top(module: Path) -> str:
    return module.relative_to(HUB).parts[0].removesuffix(".py")


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _hub_imports(module: Path) -> set[str]:
    return {n.split(".")[1] for n in _imports(module) if n.startswith("hub.")}


MODULES = sorted(p for p in HUB.rglob("*.py") if "migrations" not in p.parts)


def _in(layer: str) -> list[Path]:
    return [m for m in MODULES if LAYER.get(_top(m)) == layer]


def test_every_module_of_the_hub_belongs_to_a_layer() -> None:
    present = {_top(m) for m in HUB.rglob("*.py")}
    assert sorted(present - set(LAYER)) == []


@pytest.mark.parametrize("module", _in("service") + _in("store"), ids=str)
def test_services_and_stores_import_neither_the_web_framework_nor_an_edge(module: Path) -> None:
    assert not {n for n in _imports(module) if n.split(".")[0] == "starlette"}
    assert not {n for n in _hub_imports(module) if LAYER[n] in ("edge", "entry")}


@pytest.mark.parametrize("module", _in("service") + _in("store"), ids=str)
def test_services_and_stores_never_import_the_request_schemas(module: Path) -> None:
    assert "schemas" not in _hub_imports(module)


@pytest.mark.parametrize("module", _in("store"), ids=str)
def test_stores_never_import_a_service(module: Path) -> None:
    assert not {n for n in _hub_imports(module) if LAYER[n] == "service"}


@pytest.mark.parametrize("module", _in("edge"), ids=str)
def test_an_edge_never_imports_another_edge(module: Path) -> None:
    others = LAYERS["edge"] - {_top(module)}
    assert not (_hub_imports(module) & others)


@pytest.mark.parametrize("module", _in("wire") + _in("support"), ids=str)
def test_the_wire_format_and_support_modules_import_no_edge(module: Path) -> None:
    assert not {n for n in _hub_imports(module) if LAYER[n] in ("edge", "entry")}


def test_every_module_starts_with_future_annotations() -> None:
    for module in HUB.rglob("*.py"):
        body = ast.parse(module.read_text()).body
        if not body:
            continue
        first = body[1] if isinstance(body[0], ast.Expr) else body[0]
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__", module
