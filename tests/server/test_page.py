"""The web page's files without a browser: served without the key, every ES module the page
imports is there with a JavaScript type (browsers refuse a module served as anything else),
each tab button has its section and its module, and the wheel ships every file.
test_browser.py drives the page itself in chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from fastapi.testclient import TestClient

from server import Settings, create_app
from server.routes.page import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
KEY = "page-key"
IMPORT = re.compile(r"""^import\s[^;]*?from\s+["'](\./[\w./-]+)["'];""", re.M | re.S)


@pytest.fixture(scope="module")
def client(served):
    store, ckpt = served
    settings = Settings(store=store, checkpoint=ckpt, upload_enabled=False, api_key=KEY)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def module_graph(client, entry: str) -> dict[str, str]:
    """url -> source of every module reachable from `entry` by static imports, fetched."""
    seen: dict[str, str] = {}
    todo = [entry]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        r = client.get(url)
        assert r.status_code == 200, f"{url} is imported but not served ({r.status_code})"
        assert r.headers["content-type"].startswith("text/javascript"), (url, r.headers)
        assert r.headers["cache-control"] == "no-cache"
        seen[url] = r.text
        base = url.rsplit("/", 1)[0]
        todo += [f"{base}/{rel[2:]}" for rel in IMPORT.findall(r.text)]
    return seen


def test_the_page_and_its_files_are_served_without_a_key(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/static/js/main.js">' in page.text
    assert "/static/style.css" in page.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/v1/info").status_code == 401  # the data behind it still needs it


def test_every_module_is_imported_and_served_as_javascript(client):
    graph = module_graph(client, "/static/js/main.js")
    on_disk = {"/static/" + p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js")}
    assert set(graph) == on_disk  # none missing, none left behind unused
    assert {"/static/js/api.js", "/static/js/dom.js"} <= set(graph)
    others = [u for u in graph if not u.endswith("/api.js")]
    assert all("fetch(" not in graph[u] for u in others), "only api.js calls fetch"


def test_each_tab_button_has_its_section_and_its_module():
    html = (STATIC_DIR / "index.html").read_text()
    main = (STATIC_DIR / "js" / "main.js").read_text()
    buttons = re.findall(r'<button data-tab="(\w+)"', html)
    sections = re.findall(r'<section id="tab-(\w+)" class="tab"', html)
    block = re.search(r"const TABS = \{(.*?)\};", main, re.S)
    assert block, "main.js lists its tabs in `const TABS = {...};`"
    registered = re.findall(r"^\s*(\w+)\s*[:,]", block.group(1), re.M)
    assert buttons == sections == registered == ["try", "live", "browse", "model", "teach"]


def test_the_wheel_ships_every_page_file():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["server"]
    server = STATIC_DIR.parent
    shipped = {p for pattern in patterns for p in server.glob(pattern) if p.is_file()}
    assert shipped == {p for p in STATIC_DIR.rglob("*") if p.is_file()}
