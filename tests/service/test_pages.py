"""The browser pages over real HTTP routing: /docs, /redoc and /ui load nothing from another host
(an air-gapped cluster shows them) and only relative URLs (they work under a proxy's path prefix)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.pages import STATIC
from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade

BASE = "http://testserver"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'jobs.db'}"
    upgrade(url)  # for /metrics; the pages themselves never query it
    engine = make_engine(url)
    with TestClient(create_app(make_sessionmaker(engine)), base_url=BASE) as client:
        yield client
    engine.dispose()


class References(HTMLParser):
    """Every URL a page loads or links to: its elements' URL attributes and the URLs its scripts quote."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.script = tag == "script"
        self.urls += [value for name, value in attrs if name in {"src", "href", "spec-url"} and value]

    def handle_data(self, data: str) -> None:
        if self.script:
            self.urls += re.findall(r"""(?:url|href|src)\s*[:=]\s*['"]([^'"]+)['"]""", data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(("page", "assets"), [("/docs", 4), ("/redoc", 3)])
def test_the_docs_pages_load_only_files_the_api_serves(api, page, assets):
    response = api.get(page)
    assert response.status_code == 200
    urls = references(response.text)
    assert len(urls) >= assets, urls
    for url in urls:
        assert not urlsplit(url).netloc, f"{page} loads {url} from another host"
        assert not url.startswith("/"), f"{page}: {url} is absolute, so it would miss a proxy's prefix"
        served = api.get(urljoin(BASE + page, url))
        assert served.status_code == 200, url
    assert "openapi.json" in urls
    assert not re.search(r"https?://", response.text), "no other host, not even in a comment"


def test_swagger_ui_shows_no_validator_badge(api):
    # its default is an image from swagger.io; a blank badge on an air-gapped cluster
    assert '"validatorUrl": null' in api.get("/docs").text


def test_the_vendored_files_come_with_their_licences(api):
    for name in ("NOTICE", "LICENSE.swagger-ui", "LICENSE.redoc"):
        assert (STATIC / "vendor" / name).is_file()
    script = api.get("/vendor/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_ui_redirects_relatively_and_serves_every_file_its_page_names(api):
    for root in ("/ui", "/"):  # the service's root is its dashboard
        redirect = api.get(root, follow_redirects=False)
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "ui/"  # relative: the browser keeps the proxy's prefix
    page = api.get("/ui/")
    assert page.status_code == 200
    assert "script-src 'self';" in page.headers["content-security-policy"]  # no inline or foreign script
    assert "connect-src 'self';" in page.headers["content-security-policy"]  # a token goes nowhere else
    urls = [url for url in references(page.text) if not url.startswith("#")]
    modules = {m for path in STATIC.glob("ui/*.js") for m in re.findall(r'from "\./([a-z]+\.js)"', path.read_text())}
    assert {"app.js", "app.css"} <= set(urls)
    assert modules >= {"api.js", "dom.js"}
    for url in [*urls, *modules]:
        assert not urlsplit(url).netloc, url
        assert not url.startswith("/"), url
        assert api.get(urljoin(f"{BASE}/ui/", url)).status_code == 200, url


def test_the_dashboard_code_calls_only_relative_urls_and_never_parses_html():
    for path in Path(STATIC / "ui").iterdir():
        text = path.read_text()
        for parses_html in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert parses_html not in text, path.name
        hosts = set(re.findall(r"https?://[^\s\"'`]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not hosts, f"{path.name} names {hosts}"


def test_static_files_are_counted_under_a_route_template_not_their_path(api):
    api.get("/ui/app.js")
    assert api.get("/ui/no-such-file.js").status_code == 404
    assert api.get("/ui/..%2fpages.py").status_code == 404
    assert api.get("/vendor/%2e%2e/pages.py").status_code == 404
    metrics = api.get("/metrics").text
    assert 'route="/ui/{file}",status="200"' in metrics
    assert 'route="/ui/{file}",status="404"' in metrics
    assert "no-such-file" not in metrics


@pytest.mark.parametrize("path", ["/ui/", "/ui/index.html", "/ui/app.js", "/docs", "/redoc", "/api/v1/jobs", "/nope"])
def test_every_response_refuses_framing_and_sniffing_and_api_answers_are_not_cached(api, path):
    response = api.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"  # a signed-in page's data stays off the disk
    if path.startswith("/ui/"):
        assert "script-src 'self';" in response.headers["content-security-policy"]  # index.html by name too


def test_try_it_out_calls_the_api_relative_to_the_docs_page(api):
    assert api.get("/openapi.json").json()["servers"] == [{"url": "."}]  # not the host's root, behind a prefix


def test_api_answers_are_not_cached_behind_a_path_prefix_either(sessions, tmp_path):
    import httpx

    from service.cluster import StaticCluster
    from service.settings import ServiceSettings
    from tests.conftest import bearer, make_token, serving

    app = create_app(sessions, settings=ServiceSettings(data_dir=tmp_path), cluster=StaticCluster({"CPU": 8.0}))
    with serving(app, root_path="/training") as port:
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs", headers=bearer(make_token(sessions)))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
