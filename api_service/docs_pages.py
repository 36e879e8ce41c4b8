"""/docs (Swagger UI) and /redoc, with their JavaScript, CSS and favicon served by the API.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
access /docs is a blank page. These are the same pages (FastAPI's ``get_swagger_ui_html`` and
``get_redoc_html``, as its "self-hosting JavaScript and CSS for docs" how-to does it) pointing
at copies of those files that the ``fastapi-offline`` package ships, served from
``/docs/assets/<file>``. Only the files named in ``ASSETS`` are served: the directory is a
package's, and nothing else in it is ours to publish.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse

from cls_core.errors import NotFound

ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs/assets"
# Each file served, with its media type (stated here, not guessed from the platform's MIME
# table, which names JavaScript differently from one Python version to the next).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The files change only with the package version: let browsers keep them for a day.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def install_docs_pages(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add /docs, its OAuth2 redirect page, /redoc and the assets they load to ``app``, which
    must have been built with ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the docs pages need the OpenAPI document"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    favicon = f"{ASSETS_PATH}/favicon.png"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=root + favicon,
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=root + favicon,
            with_google_fonts=False,  # fonts.googleapis.com: another CDN
        )

    async def asset(request: Request) -> FileResponse:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound("Not found")
        return FileResponse(ASSET_DIR / name, media_type=media_type, headers=_CACHE)

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    if oauth2_redirect_url:
        app.add_route(oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", asset, include_in_schema=False)
