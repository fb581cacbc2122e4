"""The dashboard in a real browser (headless Chromium) against a running service: a submitted job
appears, its progress changes without a reload, the job page shows its log and curves, and cancel
from the page cancels it; a model's versions side by side, sorted by a figure, with the comparison
plot; then the same pages behind a proxy's path prefix, and the offline docs. Each page's
screenshot is written to docs/img/ for the README."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from control.ports import listening_sockets
from service.auth import models
from service.auth.principal import Principal, Role
from service.db import session_scope
from tests.integration.conftest import Running, wait_for
from tests.service.test_models_api import VERSIONS, register_versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "img"
PREFIX = "/training"
TRAIN = {
    "kind": "train",
    "preset": "digits-ascl",
    "name": "dashboard <b>demo</b>",  # shown as text, never as markup
    "tags": ["ui"],
    "overrides": {"train.epochs": 40, "data.train_subset": 256, "eval.pgd_steps": 2, "eval.val_steps": 1},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def running(browser, embedded) -> Running:  # after `browser`: no service without one
    return embedded


@pytest.fixture(scope="module")
def model(running) -> str:
    """A model the admin owns, with versions evaluated to known figures (VERSIONS) and v1 as champion."""
    tracker = running.stack.tracker
    _, run_id = tracker.ensure_run(experiment="ascl", job_id="j" * 32, run_name="trained", tags={})
    name = register_versions(tracker, run_id, itertools.count())
    with session_scope(running.stack.dispatcher.sessions) as session:
        models.claim(session, name, Principal(subject="admin", role=Role.ADMIN), group=None)
    assert running.client.promote(name, "1")["promoted"]
    return name


class UnderPrefix:
    """A reverse proxy's view: the API served under PREFIX, which the proxy strips before passing on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not scope["path"].startswith(f"{PREFIX}/"):
                await PlainTextResponse("not under the prefix", status_code=404)(scope, receive, send)
                return
            path = scope["path"].removeprefix(PREFIX)
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def prefixed(running) -> Iterator[str]:
    listeners = listening_sockets("127.0.0.1", 0)
    port = listeners[0].getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(UnderPrefix(running.stack.app()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": listeners}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout_s=30, poll_s=0.05, what="the proxied API")
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def text(driver: webdriver.Chrome, selector: str) -> str | None:
    """The element's text read in one step (the page redraws itself every few seconds)."""
    found: Any = driver.execute_script(
        "const node = document.querySelector(arguments[0]); return node ? node.textContent : null;", selector
    )
    return found


def until(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], timeout_s: float = 120) -> Any:
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)
    except TimeoutException:
        page = driver.execute_script("return document.body ? document.body.innerText : '';")
        raise AssertionError(
            f"timed out after {timeout_s} s at {driver.current_url}; the page shows:\n{page}"
        ) from None


def click(driver: webdriver.Chrome, selector: str) -> None:
    def clicked(d: webdriver.Chrome) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            return False
        return True

    until(driver, clicked, timeout_s=10)


@pytest.fixture(scope="module", autouse=True)
def screenshots() -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def test_a_job_shows_live_progress_and_cancel_from_the_page_cancels_it(browser, running):
    job = running.client.submit(TRAIN)
    row = f'#running tr[data-job="{job["id"]}"]'
    browser.get(f"{running.settings.api_url}/ui/#token={running.stack.admin_token}")
    assert "#token" not in browser.current_url  # taken out of the address bar and history at once
    browser.execute_script("window.notReloaded = true;")
    first = until(browser, lambda d: "epoch" in (text(d, f"{row} .progress") or "") and text(d, f"{row} .progress"))
    until(browser, lambda d: text(d, f"{row} .progress") not in (None, first))
    assert browser.execute_script("return window.notReloaded === true;")  # updated in place
    assert text(browser, f"{row} a") == TRAIN["name"]
    assert text(browser, f"{row} .eta") != "—"
    assert "loss" in (text(browser, f"{row} .metrics") or "")
    assert browser.save_screenshot(str(SCREENSHOTS / "ui-overview.png"))

    click(browser, f"{row} a")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".charts polyline"))  # an epoch finished
    until(browser, lambda d: "attempt.start" in (text(d, "#log") or ""))  # from the log stream
    assert "RUNNING" in (text(browser, "#job-events") or "")
    assert browser.save_screenshot(str(SCREENSHOTS / "ui-job.png"))

    click(browser, "#job button.cancel")
    until(browser, lambda d: d.switch_to.alert, timeout_s=5).accept()
    finished = running.client.wait(job["id"], timeout_s=60)
    assert finished["status"] == "CANCELLED"
    until(browser, lambda d: "CANCELLED" in (text(d, "#job h2") or ""), timeout_s=15)


def versions_shown(driver: webdriver.Chrome) -> list[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#versions tbody tr')].map((row) => row.dataset.version);"
    )
    return found


def test_a_sign_in_link_of_another_shape_leaves_no_token_in_the_address_bar(browser, running):
    token = running.stack.admin_token
    for fragment in ("#token=abc%ZZ", f"#token={token}&from=mail"):  # a broken escape; extra parameters (last:
        # the tab keeps the token it was given, which the next tests' page uses)
        browser.get("about:blank")  # a link opens the page anew (the same page would only change its fragment)
        browser.get(f"{running.settings.api_url}/ui/{fragment}")
        until(browser, lambda d: "#token" not in d.current_url, timeout_s=10)
    assert browser.execute_script("return sessionStorage.getItem('ascl.token');") == token


def test_a_model_page_shows_its_versions_side_by_side_sorted_by_a_figure_with_the_plot(browser, running, model):
    browser.get(f"{running.settings.api_url}/ui/#token={running.stack.admin_token}")
    browser.execute_script("location.hash = '#/models';")
    click(browser, f'#models tr[data-model="{model}"] a')
    newest_first = [str(v) for v in range(len(VERSIONS), 0, -1)]
    until(browser, lambda d: versions_shown(d) == newest_first, timeout_s=30)
    assert text(browser, '#versions tr[data-version="1"] td:nth-child(2)') == "@champion"
    assert text(browser, '#versions tr[data-version="2"] .evaluation') == "none"  # registered without figures

    click(browser, '#versions th[data-sort="autoattack_acc"] button')
    by_autoattack = sorted(
        (str(i + 1) for i, f in enumerate(VERSIONS) if f is not None),
        key=lambda v: -VERSIONS[int(v) - 1].autoattack_acc,  # type: ignore[union-attr]
    )
    until(browser, lambda d: versions_shown(d)[: len(by_autoattack)] == by_autoattack, timeout_s=15)
    assert versions_shown(browser)[-1] == "2"  # a version without that figure comes last
    assert "▼" in (text(browser, '#versions th[data-sort="autoattack_acc"]') or "")

    # the comparison plot, fetched with the token and drawn (a blob: URL the page's policy allows)
    until(
        browser,
        lambda d: d.execute_script(
            "const i = document.querySelector('#comparison img');return i && i.complete && i.naturalWidth > 0;"
        ),
        timeout_s=30,
    )
    assert "champion" in (text(browser, "#alias-moves td") or "")
    assert not text(browser, "#message")
    assert browser.save_screenshot(str(SCREENSHOTS / "ui-model.png"))


def test_the_dashboard_and_docs_work_behind_a_path_prefix(browser, running, prefixed):
    browser.get(f"{prefixed}/ui")  # redirected to ui/ under the prefix
    until(browser, lambda d: d.find_elements(By.ID, "token")).pop().send_keys(running.stack.admin_token)
    click(browser, "form.login button")
    until(browser, lambda d: text(d, "#queues td") == "default")
    assert browser.current_url.startswith(f"{prefixed}/ui/")
    assert text(browser, "#who") == "admin"

    browser.get(f"{prefixed}/ui/#/models")
    # the models the API lists (a name is claimed by its first train job, even one cancelled before it
    # registered a version), or "No models yet."
    names = [model["name"] for model in running.client.models()["models"]]
    shown = (
        (lambda d: text(d, "#models td") == names[0]) if names else (lambda d: text(d, "#models p") == "No models yet.")
    )
    until(browser, shown, timeout_s=30)
    assert not text(browser, "#message")
    assert browser.save_screenshot(str(SCREENSHOTS / "ui-models.png"))

    browser.get(f"{prefixed}/docs")
    until(browser, lambda d: "ASCL training service" in (text(d, ".swagger-ui .info .title") or ""), timeout_s=30)
    browser.get(f"{prefixed}/redoc")
    until(browser, lambda d: "ASCL training service" in (text(d, "h1") or ""), timeout_s=30)
