"""/docs and /redoc work offline: the pages name no other host, and every file they load is
served by the API itself, with the content type a browser needs to use it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from api_service.docs_pages import ASSET_DIR, ASSETS
from tests.api.conftest import assert_error

PAGES = ("/docs", "/redoc")
# Anything a browser would fetch from another host: scheme-relative URLs included.
EXTERNAL = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]*:)?//[^\s'\"<>]+")
# Swagger UI reads the OpenAPI document from a JavaScript literal, not an attribute.
SWAGGER_SPEC_URL = re.compile(r"url: '([^']+)'")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


class _References(HTMLParser):
    """The URLs a page makes the browser load: src, href and ReDoc's spec-url attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


def referenced(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return [*parser.urls, *SWAGGER_SPEC_URL.findall(html)]


async def page(api: httpx.AsyncClient, path: str) -> str:
    response = await api.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


@pytest.mark.parametrize("path", PAGES)
async def test_the_page_names_no_other_host(api: httpx.AsyncClient, path: str) -> None:
    html = await page(api, path)
    assert EXTERNAL.findall(html) == []


@pytest.mark.parametrize("path", PAGES)
async def test_every_file_the_page_loads_is_served_with_its_content_type(
    api: httpx.AsyncClient, path: str
) -> None:
    urls = referenced(await page(api, path))
    assert len(urls) >= 3, urls  # script, favicon, the OpenAPI document (and Swagger's CSS)
    for url in urls:
        response = await api.get(url)
        assert response.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        media_type = response.headers["content-type"].split(";")[0].strip()
        assert media_type in CONTENT_TYPES[suffix], (url, media_type)
        assert response.content, url


def test_every_asset_is_in_the_installed_package() -> None:
    for name in ASSETS:
        assert (ASSET_DIR / name).is_file(), name


async def test_a_file_that_is_not_an_asset_is_a_404_in_the_envelope(
    api: httpx.AsyncClient,
) -> None:
    # The package's directory holds other files (its licence, say): only ASSETS are served.
    response = await api.get("/docs/assets/__init__.py")
    assert_error(response, 404, "NOT_FOUND")
