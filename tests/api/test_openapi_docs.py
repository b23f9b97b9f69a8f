"""The OpenAPI document's facts and the docs pages: Swagger UI and ReDoc render without internet
(every script, style and icon they load is served by the app itself)."""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]

# Every URL a page makes the browser fetch: script src, link href (styles, icons), and CSS url().
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")


def _assets(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page", ["/schema/swagger", "/schema/redoc"])
async def test_the_docs_page_loads_only_assets_the_app_serves(client: Client, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    assets = _assets(response.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/schema/assets/"), f"{page} loads {asset} from elsewhere"
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert served.content, asset
    # No other absolute URL appears in the page's markup (an inline script fetching a CDN).
    assert not re.search(r"https?://(?!github\.com)", response.text), response.text


async def test_the_docs_scripts_are_served_as_javascript(client: Client) -> None:
    for path in (
        "/schema/assets/swagger-ui-dist/swagger-ui-bundle.js",
        "/schema/assets/redoc/bundles/redoc.standalone.js",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "javascript" in response.headers["content-type"], response.headers


async def test_the_document_version_is_the_package_version(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert document["info"]["version"] == importlib.metadata.version("membercore")
