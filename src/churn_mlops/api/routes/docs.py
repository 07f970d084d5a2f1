"""The interactive API docs: Swagger UI at `/docs`, ReDoc at `/redoc`, with their scripts, styles
and icon served by this process, so a browser that reaches the service but not the internet (a
firewall, an air-gapped cluster) still renders them. FastAPI's own pages load them from
cdn.jsdelivr.net, ReDoc's also Google Fonts.

The files come from the `fastapi-offline` package (Swagger UI 5 and ReDoc 2, refreshed with its
releases; pinned in requirements/*.lock). Its `FastAPIOffline` factory builds a plain `FastAPI`,
so only its `static/` directory is used; `tests/api/test_docs_pages.py` fails if a file moves.
Every asset is public, like the pages that load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs/assets"
ASSET_TYPES: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
"""Every file the pages load, with its content type: nothing else is served from the directory."""

SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    # Swagger UI's default shows a validity badge fetched from validator.swagger.io.
    "validatorUrl": None,
}
# A day: the file names stay the same across fastapi-offline upgrades.
ASSET_CACHE_CONTROL = "public, max-age=86400"


def build_docs_router(title: str, openapi_url: str) -> APIRouter:
    """`/docs`, its OAuth2 redirect page, `/redoc` and the assets they load, none in the
    OpenAPI document."""
    router = APIRouter(include_in_schema=False)
    oauth2_redirect_url = "/docs/oauth2-redirect"

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @router.get(oauth2_redirect_url)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    @router.get(ASSETS_PATH + "/{name}")
    async def asset(name: str) -> FileResponse:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(
            ASSETS_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": ASSET_CACHE_CONTROL},
        )

    return router


def _root_path(request: Request) -> str:
    """The prefix a proxy serves the app under (`--root-path`), as FastAPI's own pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")
