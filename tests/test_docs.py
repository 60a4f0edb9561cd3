from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from hub.app import ENDPOINTS

ASSETS = {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css", "/docs/init.js"}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]


def _links(client: TestClient) -> list[str]:
    parser = _Links()
    parser.feed(client.get("/docs").text)
    return parser.links


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_is_version_3_1_0(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"


def test_openapi_document_is_valid(document: dict[str, Any]) -> None:
    validate(document)


def test_openapi_lists_exactly_the_endpoints(document: dict[str, Any]) -> None:
    listed = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    wanted = {(e.method, re.sub(r"{(\w+):\w+}", r"{\1}", e.path)) for e in ENDPOINTS}
    assert listed == wanted


def test_every_ref_resolves_to_a_component_schema(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref


def test_security_schemes_offer_bearer_and_each_login(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for role in ("patient", "doctor", "admin"):
        url = schemes[f"{role}Password"]["flows"]["password"]["tokenUrl"]
        assert "post" in document["paths"][url]


def test_docs_page_is_html(client: TestClient) -> None:
    answer = client.get("/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")


def test_docs_page_references_only_local_paths(client: TestClient) -> None:
    links = _links(client)
    assert set(links) >= ASSETS
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
    assert not re.search(r"https?://", client.get("/docs").text + client.get("/docs/init.js").text)


def test_every_asset_the_docs_page_references_answers_200(client: TestClient) -> None:
    for link in _links(client):
        assert client.get(link).status_code == 200, link


def test_docs_init_loads_the_local_openapi_document(client: TestClient) -> None:
    assert 'url: "/openapi.json"' in client.get("/docs/init.js").text


def test_swagger_ui_bundle_is_version_5_or_later(client: TestClient) -> None:
    bundle = client.get("/docs/static/swagger-ui-bundle.js").text
    found = re.search(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert found is not None
    assert int(found.group(1)) >= 5


def _path_types(document: dict[str, Any], path: str, method: str) -> dict[str, str]:
    operation = document["paths"][path][method]
    return {p["name"]: p["schema"]["type"] for p in operation["parameters"] if p["in"] == "path"}


def test_path_parameters_carry_the_type_of_their_route(document: dict[str, Any]) -> None:
    assert _path_types(document, "/appointments/holds/{hold_id}", "delete") == {"hold_id": "string"}
    assert _path_types(document, "/appointments/{id}/cancel", "put") == {"id": "integer"}


def test_every_path_parameter_is_documented_once(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        named = set(re.findall(r"{(\w+)}", path))
        for method in operations:
            assert set(_path_types(document, path, method)) == named


def test_the_asyncapi_document_names_the_server_the_request_came_to(client: TestClient) -> None:
    plain = client.get("/asyncapi.json", headers={"host": "clinic.example.org:8443"})
    assert plain.json()["servers"]["hub"] == {"host": "clinic.example.org:8443", "protocol": "ws"}
    secure = TestClient(client.app, base_url="https://hub.example.org").get("/asyncapi.json")
    assert secure.json()["servers"]["hub"] == {"host": "hub.example.org", "protocol": "wss"}
