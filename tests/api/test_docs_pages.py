"""`/docs` and `/redoc` load everything from this service, never a CDN (issue 16: a user behind a
firewall sees the docs). tests/e2e/test_docs_in_chromium.py renders `/docs` in a browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from churn_mlops.api.app import create_app
from churn_mlops.api.routes.docs import ASSET_TYPES, ASSETS_DIR
from churn_mlops.model.artifact import ModelArtifact
from churn_mlops.settings import Settings
from tests.fixtures.security import security_settings

PAGES = ["/docs", "/redoc"]
EXPECTED_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


class _References(HTMLParser):
    """The URLs a page loads: `src`, `href` and ReDoc's `spec-url` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(v for k, v in attrs if k in {"src", "href", "spec-url"} and v)


def references(html: str) -> list[str]:
    """Every URL `html` loads, the attributes' and Swagger UI's `url: '...'` (the OpenAPI)."""
    parser = _References()
    parser.feed(html)
    return parser.urls + re.findall(r"\burl: '([^']*)'", html)


@pytest.fixture
def client(artifact_dir: Path, artifact: ModelArtifact) -> Iterator[TestClient]:
    # Authentication on (the default), without a key: the docs are public on purpose.
    settings = Settings(
        model_dir=artifact_dir, environment="test", database_url="", **security_settings()
    )
    with TestClient(create_app(settings, artifact)) as test_client:
        yield test_client


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_names_no_other_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    # No absolute URL at all (cdn.jsdelivr.net, fonts.googleapis.com, fastapi.tiangolo.com),
    # nor a scheme-relative one.
    assert "://" not in response.text
    assert not re.search(r"""["'(]//""", response.text)


@pytest.mark.parametrize("page", PAGES)
def test_every_url_a_docs_page_loads_answers_with_its_content_type(
    client: TestClient, page: str
) -> None:
    urls = references(client.get(page).text)
    assert "/openapi.json" in urls
    assert len(urls) >= 3  # the OpenAPI, a script, the icon (and Swagger UI's styles)
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        expected = EXPECTED_TYPES[Path(url).suffix]
        assert response.headers["content-type"].split(";")[0] == expected, url


def test_swagger_ui_loads_its_bundle_and_styles_from_the_service(client: TestClient) -> None:
    urls = references(client.get("/docs").text)
    assert "/docs/assets/swagger-ui-bundle.js" in urls
    assert "/docs/assets/swagger-ui.css" in urls
    assert "/docs/assets/favicon.png" in urls


def test_redoc_loads_its_bundle_from_the_service_without_google_fonts(client: TestClient) -> None:
    html = client.get("/redoc").text
    assert "/docs/assets/redoc.standalone.js" in references(html)
    assert "fonts.googleapis.com" not in html


def test_swagger_ui_does_not_ask_the_online_validator(client: TestClient) -> None:
    # Swagger UI's default fetches a badge from validator.swagger.io for a non-local host.
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("name", sorted(ASSET_TYPES))
def test_docs_asset_is_the_packaged_file(client: TestClient, name: str) -> None:
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 200
    assert response.content == (ASSETS_DIR / name).read_bytes()
    assert response.headers["content-type"] == ASSET_TYPES[name]
    assert response.headers["cache-control"] == "public, max-age=86400"


@pytest.mark.parametrize(
    "path", ["/docs/assets/core.py", "/docs/assets/..%2F__init__.py", "/docs/assets/"]
)
def test_anything_else_under_docs_assets_is_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_docs_pages_and_assets_follow_the_root_path(
    artifact_dir: Path, artifact: ModelArtifact
) -> None:
    settings = Settings(
        model_dir=artifact_dir, environment="test", database_url="", **security_settings()
    )
    with TestClient(create_app(settings, artifact), root_path="/churn") as client:
        for page in PAGES:
            urls = references(client.get(page).text)
            assert urls
            assert all(url.startswith("/churn/") for url in urls), urls


def test_openapi_document_is_still_served_and_lists_no_docs_route(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert not [path for path in response.json()["paths"] if path.startswith(("/docs", "/redoc"))]
