"""The dashboard in a real browser: Debian's chromium driven by Playwright, over real HTTP.

A uvicorn server in a thread serves the app over an SQLite file that holds
chatledger's demo and a week of history (``ui_data``). The browser checks what
only a browser can: the pages run under their Content-Security-Policy without
a single console error, filters and orders change the URL and the results
without reloading, pages follow each other, a call recorded elsewhere appears
on the live view without a reload, a ``<script>`` message never runs, the
keyboard reaches everything, and axe finds no serious accessibility problem.
Each view's screenshot is written to ``docs/screenshots/``.

Playwright cannot download a browser here: these tests launch ``/usr/bin/chromium``
(``.ci/run`` installs it with apt) and fail, saying so, when it is missing.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from chatledger import LLMApiCall, QueryFilter, SessionQuery, connect, utc_now, uuid7
from chatledger.ui import create_app
from ui_data import SCRIPT, SCRIPT_TITLE, History, add_history, run_quiet_demo

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"
VIEWPORT = {"width": 1280, "height": 800}
T = TypeVar("T")
WAIT_MS = 10_000  # the longest a page may take to show what it must (not a timing assertion)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end in a thread of its own.

    Playwright's sync API keeps an event loop running in the test's thread,
    where ``asyncio.run`` (and a blocking client over a loop) may not run.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(work()))
        except BaseException as exc:  # noqa: BLE001  (handed to the test's thread)
            failure.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


# --- the server --------------------------------------------------------------------------


class DashboardServer(threading.Thread):
    """uvicorn serving the dashboard over ``url`` on a free loopback port, in its own loop."""

    def __init__(self, url: str) -> None:
        super().__init__(name="dashboard-under-test", daemon=True)
        self.url = url
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.started = threading.Event()
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001  (reported by the fixture, not lost)
            self.error = exc
            self.started.set()

    async def _serve(self) -> None:
        async with await connect(self.url) as store:
            # The header shows the database as a user of ``make demo`` would see it.
            app = create_app(store, database_url="sqlite:///./chatledger.db")
            config = uvicorn.Config(app, log_level="warning", lifespan="off")
            self.server = uvicorn.Server(config)
            self.started.set()
            await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.join(timeout=30)
        self.sock.close()


@dataclass(frozen=True)
class Site:
    """The running dashboard: its address, its database, what the history holds."""

    address: str
    url: str
    history: History


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The dashboard over the demo database, served for this module's tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-browser')}/demo.db"

    async def fill() -> History:
        await run_quiet_demo(url)
        async with await connect(url) as store:
            return await add_history(store, utc_now())

    history = _run(fill)
    server = DashboardServer(url)
    server.start()
    server.started.wait(timeout=30)
    if server.error is not None:
        raise server.error
    try:
        yield Site(server.address, url, history)
    finally:
        server.stop()
    assert not server.is_alive(), "the server did not stop"


# --- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium under Playwright, headless."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install chromium; .ci/run installs it)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """A page, and what its console said: errors there include CSP violations."""

    page: Any
    errors: list[str]
    dialogs: list[str]

    def open(self, address: str) -> None:
        self.page.goto(address)
        self.page.wait_for_load_state("load")


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    """A fresh context and page, CSP enforced, recording console errors and dialogs."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    opened = Tab(page, [], [])
    page.on(
        "console", lambda message: message.type == "error" and opened.errors.append(message.text)
    )
    page.on("pageerror", lambda error: opened.errors.append(str(error)))

    def dialog(shown: Any) -> None:
        opened.dialogs.append(shown.message)
        shown.dismiss()

    page.on("dialog", dialog)
    try:
        yield opened
    finally:
        context.close()


def _session_with(site: Site, text: str) -> str:
    """The id of the one session whose messages contain ``text``."""

    async def search() -> str:
        async with await connect(site.url) as store:
            page = await store.search_sessions(SessionQuery(text=text))
        (session,) = page.sessions
        return str(session.id)

    return _run(search)


def _newest_call(site: Site) -> LLMApiCall:
    async def newest() -> LLMApiCall:
        async with await connect(site.url) as store:
            (call,) = await store.query_api_calls(QueryFilter(limit=1))
        return call

    return _run(newest)


def _record(site: Site, call: LLMApiCall) -> None:
    """Save a call through a connection of its own, as an application would."""

    async def save() -> None:
        async with await connect(site.url) as store:
            await store.save_api_call(call)

    _run(save)


def _views(site: Site) -> list[tuple[str, str, str]]:
    """(name, path, the heading it shows) for every view."""
    return [
        ("overview", "/", "Overview"),
        ("calls", "/calls", "Calls"),
        ("call", f"/calls/{_newest_call(site).id}", "call"),
        ("sessions", "/sessions", "Sessions"),
        ("session", f"/sessions/{_session_with(site, 'jacket')}", "Packing for the weather"),
        ("live", "/live", "Live"),
    ]


# --- the tests -----------------------------------------------------------------------------


def test_every_view_renders_without_an_error_and_is_screenshotted(tab: Tab, site: Site) -> None:
    """Each view loads, draws (charts on canvas), logs no error or CSP violation; screenshot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path, heading in _views(site):
        tab.open(site.address + path)
        assert heading in tab.page.locator("h1").inner_text(), name
        if name == "overview":
            expect(tab.page.locator(".chart canvas")).to_have_count(6)
        tab.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        assert tab.errors == [], (name, tab.errors)
    written = {path.stem for path in SCREENSHOTS.glob("*.png")}
    assert {"call", "calls", "live", "overview", "session", "sessions"} <= written


def test_filters_change_the_url_and_the_results_without_a_reload(tab: Tab, site: Site) -> None:
    """Typing a model and choosing a status: htmx swaps the results and pushes the URL."""
    tab.open(site.address + "/calls")
    tab.page.evaluate("window.notReloaded = true")
    tab.page.fill("#f-model", "o3-mini")
    tab.page.press("#f-model", "Enter")
    tab.page.wait_for_url(re.compile(r"/calls\?model=o3-mini$"))  # empty fields stay out of it
    models = tab.page.locator("table.calls tbody tr td:nth-child(2)")
    models.first.wait_for()
    assert set(models.all_inner_texts()) == {"o3-mini"}
    tab.page.select_option("#f-status", "failed")
    tab.page.wait_for_url(re.compile(r"model=o3-mini&status=failed"))
    # Locators and expect wait without evaluating strings, which the pages' CSP forbids.
    cells = tab.page.locator("table.calls tbody tr td:nth-child(3)")
    expect(cells.filter(has_not_text="failed")).to_have_count(0)
    statuses = tab.page.locator("table.calls tbody tr td:nth-child(3)").all_inner_texts()
    assert statuses
    assert all("failed" in status for status in statuses)
    assert tab.page.evaluate("window.notReloaded") is True  # a partial update, not a page load
    tab.page.reload()  # the URL alone brings the same view back: it can be bookmarked
    assert tab.page.input_value("#f-model") == "o3-mini"
    assert tab.page.locator("table.calls tbody tr").count() == len(statuses)
    tab.page.fill("#f-since", "yesterday")  # a bad date: the form says what is wrong
    tab.page.press("#f-since", "Enter")
    tab.page.wait_for_url(re.compile(r"since=yesterday"))
    alert = tab.page.locator("#results [role='alert']")
    alert.wait_for()
    assert "not a time" in alert.inner_text()
    assert tab.errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


def test_the_overview_range_redraws_its_charts_in_place(tab: Tab, site: Site) -> None:
    """Choosing a preset or typing a start swaps the totals and charts, and the URL says so."""
    tab.open(site.address + "/")
    tab.page.evaluate("window.notReloaded = true")
    tab.page.check("input[name='range'][value='24h']")
    tab.page.wait_for_url(re.compile(r"/\?range=24h$"))
    tab.page.wait_for_selector("text=UTC, by hour.")
    expect(tab.page.locator(".chart canvas")).to_have_count(6)
    tab.page.fill("#f-since", "30d")
    tab.page.press("#f-since", "Enter")
    tab.page.wait_for_url(re.compile(r"range=custom&since=30d"))
    tab.page.wait_for_selector("text=UTC, by day.")
    expect(tab.page.locator(".chart canvas")).to_have_count(6)
    tab.page.click("summary:has-text('Calls as a table')")
    assert tab.page.locator("table").first.locator("tbody tr").count() >= 30
    assert tab.page.evaluate("window.notReloaded") is True
    assert tab.errors == []


def test_sorting_and_pages_follow_the_links(tab: Tab, site: Site) -> None:
    """A header sorts by cost, Next page moves on by cursor, Back returns to the first page."""
    tab.open(site.address + "/calls")
    tab.page.click("thead a:has-text('Cost')")
    tab.page.wait_for_url(re.compile(r"sort=cost_desc"))
    tab.page.wait_for_selector("th[aria-sort='descending'] >> text=Cost")
    first_page = tab.page.locator("table.calls tbody tr").all_inner_texts()
    cells = tab.page.locator("table.calls tbody td:nth-child(5)").all_inner_texts()
    costs = [float(cell.strip("$").replace(",", "")) for cell in cells if cell.startswith("$")]
    assert costs == sorted(costs, reverse=True)
    tab.page.click("a[rel='next']")
    tab.page.wait_for_url(re.compile(r"sort=cost_desc&cursor="))
    tab.page.wait_for_selector("text=First page")
    second_page = tab.page.locator("table.calls tbody tr").all_inner_texts()
    assert second_page
    assert set(second_page).isdisjoint(first_page)
    tab.page.go_back()
    tab.page.wait_for_url(re.compile(r"sort=cost_desc$"))
    tab.page.wait_for_selector("table.calls tbody tr")
    assert tab.page.locator("table.calls tbody tr").all_inner_texts() == first_page
    assert tab.errors == []


def test_a_conversation_shows_its_tool_call_result_and_calls(tab: Tab, site: Site) -> None:
    """Search a session by what was said, open it: the tool call, its result, the calls inline."""
    tab.open(site.address + "/sessions")
    tab.page.fill("#f-q", "jacket")
    tab.page.press("#f-q", "Enter")
    tab.page.wait_for_url(re.compile(r"/sessions\?q=jacket$"))
    tab.page.click("table.sessions a:has-text('Packing for the weather')")
    tab.page.wait_for_url(re.compile(r"/sessions/[0-9a-f-]{36}$"))
    conversation = tab.page.locator("ol.conversation")
    assert conversation.locator("li.message").count() == 5
    assert "get_weather" in conversation.locator(".tool-call").inner_text()
    assert '"high_c": 19' in conversation.locator(".tool-result").inner_text()
    inline = conversation.locator(".inline-call")
    assert inline.count() == 3
    assert "rate_limited" in inline.nth(2).inner_text()
    assert "TTFT" in inline.first.inner_text()
    assert tab.errors == []


def test_a_recorded_call_appears_on_the_live_view_without_a_reload(tab: Tab, site: Site) -> None:
    """A call saved through another connection shows up on the open live page, marked new."""
    tab.open(site.address + "/live")
    tab.page.evaluate("window.notReloaded = true")
    now = utc_now()
    fields = {"id": uuid7(), "model_name": "live-arrival", "create_time": now, "update_time": now}
    call = LLMApiCall.model_validate({**dict(_newest_call(site)), **fields})
    _record(site, call)
    row = tab.page.locator(f"#live-{call.id}")
    row.wait_for()  # polled every two seconds; WAIT_MS bounds the wait
    assert "live-arrival" in row.inner_text()
    assert "new" in (row.get_attribute("class") or "")
    assert "1 new call" in tab.page.locator("#live-status").inner_text()
    assert tab.page.evaluate("window.notReloaded") is True
    assert tab.errors == []


def test_a_script_in_a_message_never_runs(tab: Tab, site: Site) -> None:
    """The ``<script>`` message and the ``onerror`` title show as text; no dialog opens."""
    tab.open(f"{site.address}/sessions/{site.history.script_session}")
    tab.page.wait_for_selector("ol.conversation li")
    assert tab.page.locator("h1").inner_text() == SCRIPT_TITLE
    first = tab.page.locator("ol.conversation li .text").first.inner_text()
    assert first == SCRIPT
    assert tab.page.locator("main script").count() == 0
    assert tab.page.locator("main img").count() == 0
    tab.open(site.address + "/sessions?q=" + "%3Cscript%3E")
    assert tab.page.locator("table.sessions tbody tr").count() == 1
    assert tab.dialogs == []
    assert tab.errors == []


def _focused(tab: Tab) -> dict[str, str]:
    return dict(
        tab.page.evaluate(
            "() => { const e = document.activeElement; return {tag: e.tagName.toLowerCase(), "
            "id: e.id, text: (e.textContent || '').trim(), href: e.getAttribute('href') || '', "
            "outline: getComputedStyle(e).outlineStyle}; }"
        )
    )


def _tab_until(tab: Tab, wanted: Any, limit: int = 40) -> dict[str, str]:
    """Press Tab until the focused element satisfies ``wanted``; fail after ``limit`` presses."""
    for _ in range(limit):
        tab.page.keyboard.press("Tab")
        focused = _focused(tab)
        if wanted(focused):
            return focused
    raise AssertionError(f"Tab never reached the element; last focused {focused}")


def test_the_keyboard_reaches_the_skip_link_and_every_control(tab: Tab, site: Site) -> None:
    """Tab: the skip link first (visible, outlined); Enter follows links; the form is reachable."""
    tab.open(site.address + "/")
    tab.page.keyboard.press("Tab")
    skip = _focused(tab)
    assert skip["text"] == "Skip to main content"
    assert skip["outline"] != "none"
    assert tab.page.locator(".skip-link").bounding_box()["y"] >= 0  # shown when focused
    tab.page.keyboard.press("Enter")
    assert _focused(tab)["id"] == "main"
    calls = _tab_until(tab, lambda f: f["text"] == "Calls" and f["href"] == "/calls")
    assert calls["outline"] != "none"
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(re.compile(r"/calls$"))
    model = _tab_until(tab, lambda f: f["id"] == "f-model")
    assert model["outline"] != "none"
    tab.page.keyboard.type("gpt-4o")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(re.compile(r"/calls\?model=gpt-4o$"))
    view = _tab_until(tab, lambda f: re.fullmatch(r"/calls/[0-9a-f-]{36}", f["href"]), limit=80)
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url(re.compile(view["href"] + "$"))
    assert "gpt-4o call" in tab.page.locator("h1").inner_text()
    assert tab.errors == []


def test_axe_finds_no_serious_accessibility_problem_on_any_view(browser: Any, site: Site) -> None:
    """axe-core (vendored in tests/assets) on every view: no serious or critical violation."""
    # axe is injected as an inline script, which the pages' CSP forbids: this context lifts it.
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    found = {}
    try:
        for name, path, _ in _views(site):
            page.goto(site.address + path)
            page.wait_for_load_state("load")
            if name == "overview":
                expect(page.locator(".chart canvas")).to_have_count(6)
            page.add_script_tag(path=str(AXE))
            result = page.evaluate("async () => await axe.run(document)")
            serious = [
                f"{v['id']} ({v['impact']}): {v['help']} at "
                + ", ".join(str(node["target"]) for node in v["nodes"][:3])
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if serious:
                found[name] = serious
            assert result["passes"], name  # axe ran and checked something
    finally:
        context.close()
    assert found == {}
