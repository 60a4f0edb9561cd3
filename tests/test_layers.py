from __future__ import annotations

import ast
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parent.parent / "hub"
SERVICES = (
    "accounts",
    "auth",
    "availability",
    "booking",
    "catalog",
    "events",
    "lifecycle",
    "schedules",
    "errors",
)
STORES = ("db", "models", "holds", "bus")
EDGES = ("api", "app", "ws", "__main__")


def _imports(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", SERVICES + STORES)
def test_services_and_stores_never_import_the_web_framework_or_an_edge(name: str) -> None:
    imported = _imports(HUB / f"{name}.py")
    assert not {n for n in imported if n.split(".")[0] == "starlette"}
    assert not {n for n in imported if n.startswith("hub.") and n.split(".")[1] in EDGES}


@pytest.mark.parametrize("name", STORES)
def test_stores_never_import_a_service(name: str) -> None:
    imported = _imports(HUB / f"{name}.py")
    assert not {n for n in imported if n.startswith("hub.") and n.split(".")[1] in SERVICES[:-1]}


def test_every_module_starts_with_future_annotations() -> None:
    for module in HUB.rglob("*.py"):
        body = ast.parse(module.read_text()).body
        if not body:
            continue
        first = body[1] if isinstance(body[0], ast.Expr) else body[0]
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__", module
