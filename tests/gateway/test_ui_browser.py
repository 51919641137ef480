"""The admin UI as an operator uses it: Debian's headless Chromium, driven by Selenium through
chromedriver, against a served gateway and a real a2a-sdk agent.

The browser runs blocking WebDriver calls, so each step runs in a thread while this loop serves
the gateway. Screenshots of every page go to tests/artifacts/ui/ (gitignored). Without a
browser the tests are skipped, saying how to get one; under CI=true a missing browser fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from .remote_agents import running_agent
from .serving import running_gateway

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "artifacts" / "ui"
STEP = 20.0         # seconds any one page may take to show what a step waits for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as seen  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    if paths is None:
        reason = ("no chromium/chromedriver: apt-get install -y chromium chromium-driver "
                  "(make test does it when run as root with apt)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,860",
                 "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths[1]))
    driver.set_page_load_timeout(STEP)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser, from the event loop: every WebDriver call runs in a thread."""

    def __init__(self, driver, base: str) -> None:
        self.driver, self.base = driver, base

    async def run(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self.run(self.driver.get, self.base + path)

    async def wait(self, condition, timeout: float = STEP):
        return await self.run(WebDriverWait(self.driver, timeout).until, condition)

    async def find(self, css: str):
        return await self.wait(seen.presence_of_element_located((By.CSS_SELECTOR, css)))

    async def text(self, css: str) -> str:
        return (await self.find(css)).text

    async def shows(self, css: str, text: str) -> None:
        """Wait until the element shows `text` (after a click, the old page may still be there)."""
        await self.wait(seen.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    async def leave(self) -> None:
        """One blank tab: no page of this test keeps a stream open on its gateway."""
        def blank():
            for handle in self.driver.window_handles[1:]:
                self.driver.switch_to.window(handle)
                self.driver.close()
            self.driver.switch_to.window(self.driver.window_handles[0])
            self.driver.get("about:blank")
        await self.run(blank)

    async def shot(self, name: str) -> None:
        """Keep a screenshot of the page as a test artifact."""
        path = SHOTS / f"{name}.png"
        assert await self.run(self.driver.save_screenshot, str(path)) and path.stat().st_size > 0

    async def script(self, source: str, *args):
        return await self.run(self.driver.execute_script, source, *args)

    async def accessible(self) -> None:
        """Landmarks, a skip link and a label for every control of the page."""
        problems = await self.script("""
            const out = [];
            for (const tag of ["header", "nav", "main", "h1"]) if (!document.querySelector(tag)) out.push("no " + tag);
            if (!document.querySelector("a.skip[href='#main']")) out.push("no skip link");
            for (const c of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
              const labelled = (c.id && document.querySelector(`label[for="${c.id}"]`)) || c.getAttribute("aria-label");
              if (!labelled) out.push("unlabelled " + (c.id || c.name || c.tagName));
            }
            return out;""")
        assert problems == [], problems


@pytest.fixture
async def ui(browser, tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005}, "gateway": {}}
    async with running_gateway(settings) as gw, running_agent(streaming=True) as agent:
        gw.agent = agent
        page = Page(browser, gw.base)
        try:
            yield page, gw
        finally:
            await page.leave()


async def test_every_page_drives_an_agent_from_registration_to_a_completed_task(ui):
    page, gw = ui
    await page.open("/")
    assert (await page.run(lambda: page.driver.current_url)).endswith("/admin/ui/")
    await page.accessible()
    # From the keyboard: the first Tab reaches the skip link, Enter moves focus into the content.
    body = await page.find("body")
    await page.run(body.send_keys, Keys.TAB)
    assert await page.script("return document.activeElement.className") == "skip"
    await page.run(lambda: page.driver.switch_to.active_element.send_keys(Keys.ENTER))
    await page.wait(lambda d: d.execute_script("return document.activeElement.id") == "main")

    # Register a real a2a-sdk agent by its card URL, with the keyboard's form.
    field = await page.find("#card_url")
    await page.run(field.send_keys, gw.agent.card_url)
    await page.run((await page.find("#register-heading + form button")).click)
    await page.shows(".notice", "Registered pdf-summariser")
    row = await page.find("tr[data-name='pdf-summariser']")
    assert "available" in await page.run(lambda: row.text)
    await page.shot("capabilities")

    await page.run((await page.find("tr[data-name='pdf-summariser'] .actions button:not(.danger)")).click)
    await page.shows(".notice", "Refreshed the card of pdf-summariser")

    # The live task list is open while the playground (another tab) sends the message.
    await page.open("/admin/ui/tasks?capability=pdf-summariser")
    await page.accessible()
    await page.wait(seen.text_to_be_present_in_element((By.ID, "live-status"), "live"))
    tasks_tab = await page.run(lambda: page.driver.current_window_handle)
    await page.run(page.driver.switch_to.new_window, "tab")
    await page.open("/admin/ui/playground?capability=pdf-summariser")
    await page.accessible()
    await page.wait(lambda d: d.find_element(By.ID, "mcp-state").text.startswith(("MCP:", "3 tools")))
    assert await page.text("#mcp-state") == "3 tools"
    await page.find("#mcp-tools li[data-tool='pdf-summariser']")
    text = await page.find("#p-text")
    await page.run(text.clear)
    await page.run(text.send_keys, "the quarterly report")
    await page.run((await page.find("#playground button")).click)
    await page.wait(lambda d: d.find_element(By.ID, "p-state").get_attribute("data-final") == "completed")
    events = await page.text("#p-events")
    assert "summary of: the quarterly report" in events and "completed" in events
    await page.shot("playground")
    task_link = await page.find("#p-task-link a")
    task_id = await page.run(lambda: task_link.text)

    await page.run(page.driver.switch_to.window, tasks_tab)
    await page.wait(seen.presence_of_element_located(
        (By.CSS_SELECTOR, f"#tasks tr[data-id='{task_id}'][data-state='completed']")))
    await page.shot("tasks")

    await page.run((await page.find(f"#tasks tr[data-id='{task_id}'] a")).click)
    await page.shows("#task-state", "completed")
    await page.accessible()
    assert "the quarterly report" in await page.text("#timeline")
    assert "summary of: the quarterly report" in await page.text("#artifacts")
    await page.shot("task")

    await page.open("/admin/ui/status")
    await page.accessible()
    assert await page.text("#backend-health") == "healthy" and await page.text("#ready") == "ready"
    await page.wait(lambda d: d.find_element(By.ID, "metrics-state").text != "Reading /metrics…")
    await page.shot("status")

    await page.open("/admin/ui/")
    await page.run((await page.find("tr[data-name='pdf-summariser'] button.danger")).click)
    alert = await page.wait(seen.alert_is_present())
    await page.run(alert.accept)
    await page.shows(".notice", "Removed pdf-summariser")
    assert (await gw.http.get("/admin/agents/pdf-summariser")).status_code == 404


async def test_a_running_task_page_follows_its_events_live_and_can_cancel_it(ui):
    page, gw = ui
    assert (await gw.http.post("/admin/agents", json={"card_url": gw.agent.card_url})).status_code == 201
    sent = await gw.http.post("/agents/pdf-summariser/message:send", headers={"A2A-Version": "1.0"}, json={
        "message": {"messageId": "m-wait", "role": "ROLE_USER", "parts": [{"text": "wait"}]},
        "configuration": {"returnImmediately": True}})
    task_id = sent.json()["task"]["id"]
    async with asyncio.timeout(STEP):
        await gw.agent.executor.working.wait()
    await page.open(f"/admin/ui/tasks/{task_id}")
    await page.wait(seen.text_to_be_present_in_element((By.ID, "timeline"), "reading"))
    await page.run((await page.find("#cancel-form button")).click)
    await page.wait(seen.text_to_be_present_in_element((By.ID, "task-state"), "canceled"))
    await page.shot("task-canceled")


async def test_the_register_form_shows_the_gateways_refusal(ui):
    page, _ = ui
    await page.open("/admin/ui/")
    field = await page.find("#card_url")
    await page.run(field.send_keys, "http://169.254.169.254/latest/meta-data/")
    await page.run((await page.find("#register-heading + form button")).click)
    await page.shows(".problem", "Could not register")


async def test_with_tokens_the_browser_logs_in_and_lands_on_the_page_it_asked_for(browser, tmp_path):
    settings = {"lite": {"data_dir": str(tmp_path / "engine"), "tick": 0.005},
                "gateway": {"bearer_tokens": ["browser-token"]}}
    async with running_gateway(settings) as gw:
        page = Page(browser, gw.base)
        try:
            await page.open("/admin/ui/status")
            field = await page.find("#token")
            await page.accessible()
            await page.shot("login")
            await page.run(field.send_keys, "browser-token")
            await page.run((await page.find("#login button")).click)
            await page.shows("#backend-health", "healthy")
            await page.wait(lambda d: "series from /metrics" in d.find_element(By.ID, "metrics-state").text
                            or "No metrics" in d.find_element(By.ID, "metrics-state").text)
        finally:
            await page.leave()
