"""Driving a real headless Chromium from the tests: Debian's Chromium and chromedriver
(`make browser` installs them), waits on the page, and screenshots for people to look at."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 20
"""The longest a test waits for the page to show something; exceeding it fails the test."""

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)

T = TypeVar("T")


def chromium(profile: Path) -> webdriver.Chrome:
    """A new headless Chromium with its profile in `profile`; the caller quits it.

    The driver is given explicitly: selenium-manager must never try to download one (the
    `browser` fixture also sets SE_OFFLINE)."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in CHROMIUM_ARGS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking WebDriver work off the event loop, which must keep serving the page."""
    return await asyncio.to_thread(function, *args)


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait on the page of up to WAIT_SECONDS."""
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1)


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the page shows to tests/artifacts/`name`.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    print(f"screenshot: {path}")
    return path
