"""The web page in a real browser: Debian's Chromium (/usr/bin/chromium, installed by `make browser`)
driven by Playwright, against a running core with real task processes.

What a shift crew does, from the browser alone: create an environment from the form built from the
template's public variables, run a whole cycle with the buttons, watch states change live (no
reload), and find the buttons blocked while another operator holds the environment.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from aliecs.errors import TransitionError
from aliecs.web import WebServer
from tests.conftest import RepoBuilder
from tests.web_helpers import web_core

# One browser for the module (launching Chromium costs about a second), hence one event loop.
pytestmark = [
    pytest.mark.usefixtures("no_leaked_processes"),
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

CHROMIUM = Path("/usr/bin/chromium")
#: The README's picture of the GUI; refreshed by this test only when ALIECS_UPDATE_SCREENSHOT=1, so
#: that an ordinary test run leaves the working tree clean.
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "gui.png"
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest_asyncio.fixture(loop_scope="module")
async def server(tmp_path: Path, repo: RepoBuilder) -> AsyncIterator[WebServer]:
    async with web_core(tmp_path, repo) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, server: WebServer, operator: str) -> Page:
    """A new browser context (its own session, as another operator's browser) on the page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(server.url)
    await expect(page.locator("#live")).to_have_text("live")
    await page.fill("#operator", operator)
    return page


async def buttons(page: Page) -> list[str]:
    return await page.locator("#transitions button").evaluate_all("nodes => nodes.map(n => n.dataset.event)")


async def click_transition(page: Page, event: str, state: str) -> None:
    await page.click(f"#transitions button[data-event={event}]")
    await expect(page.locator("#env-state")).to_have_text(state)


async def test_create_from_the_form_and_run_a_whole_cycle_with_the_buttons(
    server: WebServer, browser: Browser, tmp_path: Path
) -> None:
    page = await open_page(browser, server, "alice")
    await page.click("#new-env")
    await expect(page.locator("#template option")).to_have_count(1)  # only the !public template
    await expect(page.locator("#template-description")).to_have_text("a readout chain of fake tasks")
    level = page.locator("[data-variable=qc_level]")
    await expect(level).to_be_hidden()  # visibleif: $$qc_enabled === "true"
    histograms = page.locator("#var-qc_histograms")
    await page.check("#var-qc_enabled")
    await expect(level).to_be_visible()
    await expect(histograms).to_be_hidden()  # ... && ($$qc_level === "full" || ...)
    await page.select_option("#var-qc_level", "full")
    await expect(histograms).to_be_visible()
    await page.fill("#var-readouts", "1")
    await expect(histograms).to_be_disabled()  # enabledif: $$readouts !== "1"
    await page.fill("#var-readouts", "3")
    await expect(histograms).to_be_enabled()
    await page.click("#create")

    await expect(page).to_have_url(re.compile(r"#/env/\w+$"))
    env_id = page.url.rsplit("/", 1)[1]
    env = server.core.environment(env_id)
    assert env.user_vars["qc_level"] == "full" and env.user_vars["qc_enabled"] == "true"
    assert env.user_vars["qc_histograms"] == "100" and env.user_vars["readouts"] == "3"
    await expect(page.locator("#env-state")).to_have_text("DEPLOYED")
    await expect(page.locator("#tasks tbody tr")).to_have_count(4)
    await expect(page.locator("#lock-text")).to_contain_text("You (alice) control")
    assert await buttons(page) == ["CONFIGURE", "EXIT"]

    await click_transition(page, "CONFIGURE", "CONFIGURED")
    assert await buttons(page) == ["START_ACTIVITY", "RESET", "EXIT"]
    await click_transition(page, "START_ACTIVITY", "RUNNING")
    await expect(page.locator("#env-run")).to_have_text(str(env.run_number))
    await expect(page.locator("#tasks .task-state")).to_have_text(["RUNNING"] * 4)
    await expect(page.locator("#runs tbody tr .outcome")).to_have_text(["running"])
    await expect(page.locator("#tree .task-facts").first).to_contain_text(f"pid {env.tasks[0].pid}")
    assert await buttons(page) == ["STOP_ACTIVITY"]
    await page.click("#tasks tbody tr >> nth=0 >> button")
    await expect(page.locator("#log-text")).to_contain_text("START")
    picture = SCREENSHOT if os.environ.get("ALIECS_UPDATE_SCREENSHOT") == "1" else tmp_path / "gui.png"
    await page.screenshot(path=str(picture), full_page=True)
    assert picture.read_bytes().startswith(b"\x89PNG")

    await click_transition(page, "STOP_ACTIVITY", "CONFIGURED")
    await expect(page.locator("#runs tbody tr .outcome")).to_have_text(["stopped"])
    await click_transition(page, "RESET", "DEPLOYED")
    await click_transition(page, "EXIT", "DONE")
    assert await buttons(page) == []
    await page.click("#destroy")  # the confirmation dialog is accepted
    await expect(page).to_have_url(re.compile(r"#/$"))
    await expect(page.locator("#no-envs")).to_be_visible()
    assert await server.core.environments() == []


async def test_states_change_live_without_reloading(server: WebServer, browser: Browser) -> None:
    page = await open_page(browser, server, "carol")
    await page.evaluate("window.notReloaded = true")
    env = await server.core.new_environment(
        "shift", {"readouts": "1", "readout_args": "--latency CONFIGURE=2 --fail-on START"}
    )
    row = page.locator(f"#envs tr[data-env='{env.id}']")
    await expect(row.locator(".state")).to_have_text("DEPLOYED")  # appeared by itself
    await row.click()
    await expect(page.locator("#tasks .task-state")).to_have_text(["STANDBY"])
    running = asyncio.ensure_future(env.transition("CONFIGURE"))  # driven by someone else (Python API)
    await expect(page.locator("#progress-text")).to_contain_text("CONFIGURE: 0 of 1 tasks CONFIGURED")
    await running
    await expect(page.locator("#env-state")).to_have_text("CONFIGURED")
    await expect(page.locator("#tasks .task-state")).to_have_text(["CONFIGURED"])
    await expect(page.locator("#progress")).to_be_hidden()
    with pytest.raises(TransitionError):
        await env.transition("START_ACTIVITY")  # the task fails: the environment goes to ERROR
    await expect(page.locator("#env-state")).to_have_text("ERROR")
    await expect(row.locator(".state")).to_have_text("ERROR")
    await expect(page.locator("#env-fault")).to_contain_text("START: task went to ERROR")
    await expect(page.locator("#runs tbody tr .outcome")).to_have_text(["error"])
    assert await buttons(page) == ["RECOVER"]  # the only way out of ERROR
    await page.click("#lock-take")
    await click_transition(page, "RECOVER", "DEPLOYED")
    await expect(page.locator("#env-fault")).to_be_empty()
    assert await buttons(page) == ["CONFIGURE", "EXIT"]
    assert await page.evaluate("window.notReloaded") is True
    await env.destroy()
    await expect(row).to_have_count(0)


async def test_a_lock_held_by_another_session_blocks_the_buttons(server: WebServer, browser: Browser) -> None:
    alice = await open_page(browser, server, "alice")
    await alice.click("#new-env")
    await alice.fill("#var-readouts", "1")
    await alice.click("#create")
    await expect(alice.locator("#env-state")).to_have_text("DEPLOYED")
    env_url = alice.url

    bob = await open_page(browser, server, "bob")
    await bob.goto(env_url)
    await expect(bob.locator("#lock-text")).to_contain_text("Controlled by alice")
    await expect(bob.locator("#transitions button[data-event=CONFIGURE]")).to_be_disabled()
    await expect(bob.locator("#destroy")).to_be_disabled()
    await expect(bob.locator("#lock-force")).to_be_visible()
    env_id = env_url.rsplit("/", 1)[1]
    await expect(bob.locator(f"#envs tr[data-env='{env_id}'] .lock-holder")).to_have_text("alice")

    await alice.click("#lock-release")
    await expect(bob.locator("#lock-text")).to_have_text("Nobody controls this environment.")  # live
    await bob.click("#lock-take")
    await expect(bob.locator("#transitions button[data-event=CONFIGURE]")).to_be_enabled()
    await expect(alice.locator("#lock-text")).to_contain_text("Controlled by bob")  # live, on alice's page
    await expect(alice.locator("#transitions button[data-event=CONFIGURE]")).to_be_disabled()
    await bob.click("#transitions button[data-event=CONFIGURE]")
    await expect(alice.locator("#env-state")).to_have_text("CONFIGURED")
    await server.core.environment(env_id).destroy()


async def test_a_core_with_a_token_asks_for_it_once(
    tmp_path: Path, repo: RepoBuilder, browser: Browser
) -> None:
    async with web_core(tmp_path, repo, token="shift-token") as server:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(server.url)
        await expect(page.locator("#login")).to_be_visible()
        await page.fill("#login-token", "not-it")
        await page.click("#login button")
        await expect(page.locator("#login-error")).to_have_text("wrong token for this core")
        await page.fill("#login-token", "shift-token")
        await page.click("#login button")
        await expect(page.locator("#login")).to_be_hidden()
        await expect(page.locator("#live")).to_have_text("live")  # the event stream carries the cookie
        await expect(page.locator("#core-info")).to_contain_text("nodes node00, node01")
        await context.close()
