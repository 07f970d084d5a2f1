"""`/docs` and `/redoc` rendered by headless Chromium (Debian's `chromium`, `make tools`) from a
real `churn-mlops serve`, with no name resolution beyond 127.0.0.1: a page that loaded Swagger UI
or ReDoc from a CDN would render nothing here (issue 16: a user behind a firewall sees the docs).
The rendered DOM must show every operation of the OpenAPI document.

`UPDATE_DOCS_SCREENSHOT=1 pytest tests/e2e/test_docs_in_chromium.py` also writes the README's
screenshot, docs/api-docs.png; otherwise it goes to a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from benchmarks.servers import free_port
from tests.fixtures.serve import CLI, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "api-docs.png"
WINDOW = (1280, 2000)
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Every host name but the loopback address fails to resolve: a CDN reference cannot load.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


@pytest.fixture(scope="module")
def browser() -> str:
    """The `chromium` command; a failure under CI (`CI=true`), a skip elsewhere, if missing."""
    path = shutil.which("chromium")
    if path is None:
        reason = "chromium is not installed (`make tools` installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the docs must be rendered)")
        pytest.skip(reason)
    return path


def render(browser: str, url: str, profile: Path, *options: str) -> str:
    """Load `url` in headless Chromium, offline, until it is idle; its stdout."""
    command = [
        browser,
        "--headless",
        # Tests run as root, where Chromium's sandbox refuses to start; the page is our own.
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        OFFLINE,
        # Virtual time runs only while nothing loads: the scripts, the OpenAPI and the
        # rendering all finish inside the budget (about 2 s of real time here).
        "--virtual-time-budget=10000",
        *options,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_AUTH_ENABLED": "false",
        "CHURN_DATABASE_URL": "",
    }
    log_path = tmp_path_factory.mktemp("docs-serve") / "serve.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", "1", "--model-dir", str(artifact_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base_url, process, exit_details=log_path.read_text)
            yield base_url
        finally:
            stop(process)


@pytest.fixture(scope="module")
def openapi(server: str) -> dict[str, object]:
    document: dict[str, object] = httpx.get(f"{server}/openapi.json", timeout=5).json()
    return document


def operations(openapi: dict[str, object]) -> set[tuple[str, str]]:
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS
    }


class SwaggerOperations(HTMLParser):
    """(method, path) of each operation block Swagger UI rendered: the text of its
    `opblock-summary-method` and the `data-path` of its `opblock-summary-path`."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[tuple[str, str]] = set()
        self._in_method = False
        self._method = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "opblock-summary-method" in classes:
            self._in_method = True
        elif (
            any(c.startswith("opblock-summary-path") for c in classes) and "data-path" in attributes
        ):
            self.found.add((self._method, attributes["data-path"] or ""))

    def handle_endtag(self, tag: str) -> None:
        self._in_method = False

    def handle_data(self, data: str) -> None:
        if self._in_method:
            self._method = data.strip()


def page_requests(net_log: Path, site: str) -> set[str]:
    """The URLs requested on behalf of a page of `site` (its network isolation key), from a
    Chromium NetLog (`--log-net-log`); Chromium's own background requests are left out."""
    log = json.loads(net_log.read_text())
    return {
        event["params"]["url"]
        for event in log["events"]
        if "url" in event.get("params", {})
        and str(event["params"].get("network_isolation_key", "")).startswith(f"{site} ")
    }


def test_swagger_ui_renders_every_operation_offline(
    browser: str, server: str, openapi: dict[str, object], tmp_path: Path
) -> None:
    net_log = tmp_path / "net-log.json"
    options = ("--dump-dom", f"--log-net-log={net_log}")
    dom = render(browser, f"{server}/docs", tmp_path / "profile", *options)
    parser = SwaggerOperations()
    parser.feed(dom)
    assert parser.found == operations(openapi)
    requested = page_requests(net_log, "http://127.0.0.1")
    assert {urlsplit(url).hostname for url in requested} == {"127.0.0.1"}
    assert {urlsplit(url).path for url in requested} >= {
        "/docs",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    }


def test_redoc_renders_every_operation_offline(
    browser: str, server: str, openapi: dict[str, object], tmp_path: Path
) -> None:
    dom = render(browser, f"{server}/redoc", tmp_path / "profile", "--dump-dom")
    paths = openapi["paths"]
    assert isinstance(paths, dict)
    operation_ids = {
        operation["operationId"]
        for item in paths.values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    assert operation_ids
    for operation_id in operation_ids:
        assert f'data-section-id="operation/{operation_id}"' in dom, operation_id


def test_a_page_loading_swagger_ui_from_a_cdn_renders_nothing_here(
    browser: str, server: str, tmp_path: Path
) -> None:
    """The control: FastAPI's stock page (scripts from cdn.jsdelivr.net) shows no Swagger UI
    under the same flags, so the tests above would catch a CDN reference."""
    page = tmp_path / "cdn-docs.html"
    page.write_bytes(get_swagger_ui_html(openapi_url=f"{server}/openapi.json", title="cdn").body)
    dom = render(browser, page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert 'id="swagger-ui"' in dom
    assert "opblock" not in dom
    assert 'class="swagger-ui"' not in dom


def test_screenshot_of_the_docs(browser: str, server: str, tmp_path: Path) -> None:
    screenshot = tmp_path / "api-docs.png"
    width, height = WINDOW
    render(
        browser,
        f"{server}/docs",
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        f"--window-size={width},{height}",
    )
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW
    # A blank page of this size compresses to a few kilobytes; the rendered docs to about 180.
    assert len(png) > 60_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, README_SCREENSHOT)
