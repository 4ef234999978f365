"""The browser pages, in a real headless Chromium: GraphiQL and the live console.

Selenium drives Debian's Chromium and chromedriver (`make browser` installs them); the
server is the suite's own, in this event loop, so every blocking WebDriver call runs in a
thread (`asyncio.to_thread`) while the loop keeps serving. Screenshots of both pages are
saved to tests/artifacts/ for people to look at.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from starlette.applications import Starlette

from sessiongraph.app import create_app
from sessiongraph.settings import Settings
from storage.events import EventHub
from tests.api_client import ApiClient
from tests.browser import WAIT_SECONDS, in_thread, screenshot, wait
from tests.factories import create_session, user_messages
from tests.operations import (
    ADD_MESSAGES,
    CREATE_ACCESS_TOKEN,
    UPDATE_SESSION,
)
from tests.serving import bound_socket, serve
from tests.ws_client import wait_until


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """Browser console lines reporting a Content-Security-Policy violation."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    messages = [str(entry.get("message", "")) for entry in entries]
    return [message for message in messages if "Content Security Policy" in message]


def resources_loaded(driver: WebDriver) -> list[str]:
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    return names


# GraphiQL


def run_in_graphiql(driver: WebDriver, base_url: str, key: str, query: str) -> dict[str, Any]:
    """Open GraphiQL, put the query and the key's header in its editors, run it, and return
    the JSON the response pane shows."""
    driver.get(f"{base_url}/graphql")
    wait(driver).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror"))
    )
    driver.execute_script(
        "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
        ".setValue(arguments[0]);",
        query,
    )
    tabs = driver.find_elements(By.CSS_SELECTOR, ".graphiql-editor-tools button")
    [headers_tab] = [tab for tab in tabs if tab.text.strip() == "Headers"]
    headers_tab.click()
    headers = json.dumps({"Authorization": f"Bearer {key}"})
    wait(driver).until(
        lambda d: d.execute_script(
            """
            const visible = [...document.querySelectorAll(
              '.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror')];
            if (visible.length !== 1) return false;
            visible[0].CodeMirror.setValue(arguments[0]);
            return true;
            """,
            headers,
        )
    )
    driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
    shown: str = wait(driver).until(
        lambda d: d.execute_script(
            "const editor = document.querySelector('.graphiql-response .CodeMirror');"
            "return editor && editor.CodeMirror.getValue();"
        )
    )
    result: dict[str, Any] = json.loads(shown)
    return result


async def test_graphiql_runs_a_query_with_the_api_key(
    browser: webdriver.Chrome, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    session_id = await create_session(
        api, name="GraphiQL call", messages=user_messages("Hello from the browser")
    )
    query = (
        "query InBrowser {\n"
        "  sessions(first: 5) { totalCount nodes { id name messages { nodes { seq content } } } }\n"
        "}"
    )

    result = await in_thread(run_in_graphiql, browser, server, org[1], query)

    assert result == {
        "data": {
            "sessions": {
                "totalCount": 1,
                "nodes": [
                    {
                        "id": session_id,
                        "name": "GraphiQL call",
                        "messages": {"nodes": [{"seq": 1, "content": "Hello from the browser"}]},
                    }
                ],
            }
        }
    }
    # Everything came from this server: GraphiQL works offline and tells no CDN about it.
    loaded = await in_thread(resources_loaded, browser)
    assert loaded, "GraphiQL loaded no resources"
    assert all(url.startswith(server) for url in loaded), loaded
    await in_thread(screenshot, browser, "graphiql")


async def test_graphiql_page_loads_its_assets_from_this_server(http: httpx.AsyncClient) -> None:
    page = (await http.get("/graphql", headers={"Accept": "text/html"})).text
    assets = re.findall(r'(?:src|href)="([^"]+)"\s+integrity="([^"]+)"', page)

    assert "unpkg.com" not in page
    assert "jsdelivr" not in page
    assert len(assets) >= 4, assets  # react, react-dom, graphiql's script and style, ...
    for url, integrity in assets:
        assert url.startswith("/static/graphiql/"), url
        response = await http.get(url)
        assert response.status_code == 200, url
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}", f"{url} does not match its integrity hash"


# The live console


def open_console(driver: WebDriver, base_url: str, key: str) -> None:
    driver.get(f"{base_url}/console")
    field = wait(driver).until(ec.element_to_be_clickable((By.ID, "api-key")))
    field.send_keys(key)
    driver.find_element(By.ID, "connect").click()


def session_rows(driver: WebDriver) -> dict[str, list[str]]:
    """The sessions table: each session id and the text of its cells."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr[data-session-id]")
    return {
        str(row.get_attribute("data-session-id")): [
            cell.text for cell in row.find_elements(By.TAG_NAME, "td")
        ]
        for row in rows
    }


def transcript_rows(driver: WebDriver) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#transcript tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def list_and_open(
    driver: WebDriver, base_url: str, key: str, session_id: str, sessions: int
) -> dict[str, Any]:
    """Enter the key, wait until the list shows `sessions` sessions, open `session_id` and
    wait until its transcript is shown and live. Returns what the page showed on the way."""
    open_console(driver, base_url, key)
    listed = wait(driver).until(
        lambda d: session_rows(d) if len(session_rows(d)) == sessions else None
    )
    driver.find_element(
        By.CSS_SELECTOR, f'#sessions tr[data-session-id="{session_id}"] button'
    ).click()
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    return {
        "sessions": listed,
        "selected": driver.find_element(
            By.CSS_SELECTOR, f'#sessions tr[data-session-id="{session_id}"]'
        ).get_attribute("aria-selected"),
        "heading": driver.find_element(By.ID, "transcript-heading").text,
        "transcript": transcript_rows(driver),
        "url": driver.current_url,
        "stored": driver.execute_script("return sessionStorage.getItem('sessiongraph.apiKey');"),
        "local_storage": driver.execute_script("return localStorage.length;"),
    }


def wait_for_messages(driver: WebDriver, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """Wait until the transcript shows each of `seqs`; their cells' text and whether any
    markup ended up inside them."""
    shown: dict[int, dict[str, Any]] = {}
    for seq in seqs:
        row: WebElement = wait(driver).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, f'#transcript tr[data-seq="{seq}"]'))
        )
        shown[seq] = {
            "cells": [cell.text for cell in row.find_elements(By.TAG_NAME, "td")],
            "markup": len(row.find_elements(By.CSS_SELECTOR, "td *:not(time)")),
        }
    return shown


def wait_for_cell(driver: WebDriver, session_id: str, column: int, text: str) -> None:
    """Wait until the session's row in the sessions table shows `text` in `column`."""
    wait(driver).until(lambda d: session_rows(d)[session_id][column] == text)


def live_badge_and_summary(driver: WebDriver) -> tuple[str, str]:
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, "live"), "ended"))
    badge = driver.find_element(By.ID, "live").text
    return badge, driver.find_element(By.ID, "transcript-summary").text


async def test_console_lists_sessions_and_follows_a_transcript_live(
    browser: webdriver.Chrome, app: Starlette, server: str, api: ApiClient, org: tuple[str, str]
) -> None:
    key = org[1]
    quiet = await create_session(api, name="Quiet one")
    call = await create_session(
        api, name="Support call", messages=user_messages("Hi!", "Where is my order?")
    )

    shown = await in_thread(list_and_open, browser, server, key, call, 2)
    # The protocol does not acknowledge a subscription; sessionUpdated (unlike messageAdded,
    # which replays from afterSeq) only sees changes made once it is registered.
    hub: EventHub = app.state.services.events
    await wait_until(
        lambda: len(hub._feeds.get(call, ())) == 2,
        "the page's two subscriptions are registered",
        WAIT_SECONDS,
    )

    # Most recently updated first: name, status, messageCount, updatedAt.
    assert list(shown["sessions"]) == [call, quiet]
    assert shown["sessions"][call][:3] == ["Support call", "ACTIVE", "2"]
    assert shown["sessions"][quiet][:3] == ["Quiet one", "ACTIVE", "0"]
    assert all(cells[3] for cells in shown["sessions"].values()), "no updatedAt shown"
    assert shown["selected"] == "true"
    assert shown["heading"] == "Transcript: Support call"
    assert [row[:3] for row in shown["transcript"]] == [
        ["1", "user", "Hi!"],
        ["2", "user", "Where is my order?"],
    ]
    assert all(row[3] for row in shown["transcript"]), "no time shown"
    # The key stays in this tab's sessionStorage, never in the URL or localStorage.
    assert shown["url"] == f"{server}/console"
    assert key not in shown["url"]
    assert shown["stored"] == key
    assert shown["local_storage"] == 0

    # A message appended through the API appears on the page by itself, as text.
    hostile = '<b>not bold</b> & <img src="x" onerror="document.title=\'owned\'">'
    await api.data(
        ADD_MESSAGES,
        {
            "sessionId": call,
            "messages": [
                {"assistant": {"content": "It shipped yesterday."}},
                {"user": {"content": hostile}},
            ],
        },
    )
    live = await in_thread(wait_for_messages, browser, [3, 4])

    assert live[3]["cells"][:3] == ["3", "assistant", "It shipped yesterday."]
    assert live[4]["cells"][:3] == ["4", "user", hostile]
    assert live[3]["markup"] == live[4]["markup"] == 0
    assert await in_thread(lambda: browser.title) == "sessiongraph console"
    await in_thread(wait_for_cell, browser, call, 2, "4")
    assert await in_thread(csp_violations, browser) == []
    loaded = await in_thread(resources_loaded, browser)
    assert all(url.startswith(server) for url in loaded), loaded
    await in_thread(screenshot, browser, "console")

    # sessionUpdated brings the status change; messageAdded completes with the session.
    await api.data(UPDATE_SESSION, {"id": call, "input": {"status": "COMPLETED"}})
    await in_thread(wait_for_cell, browser, call, 1, "COMPLETED")
    ended = await in_thread(live_badge_and_summary, browser)
    assert ended == ("ended", "Completed · 4 messages")


async def test_console_works_with_a_read_only_access_token_for_one_session(
    browser: webdriver.Chrome, server: str, api: ApiClient
) -> None:
    await create_session(api, name="Not for this token", messages=user_messages("hidden"))
    call = await create_session(api, name="Shared call", messages=user_messages("Hello"))
    minted = await api.data(CREATE_ACCESS_TOKEN, {"input": {"sessionIds": [call]}})
    token = minted["createAccessToken"]["token"]

    shown = await in_thread(list_and_open, browser, server, token, call, 1)
    assert list(shown["sessions"]) == [call]
    assert [row[:3] for row in shown["transcript"]] == [["1", "user", "Hello"]]
    assert token not in shown["url"]

    await api.data(ADD_MESSAGES, {"sessionId": call, "messages": [{"user": {"content": "Hi"}}]})
    live = await in_thread(wait_for_messages, browser, [2])
    assert live[2]["cells"][:3] == ["2", "user", "Hi"]


def wait_for_live_text(driver: WebDriver, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, "live"), text))


def transcript_seqs(driver: WebDriver) -> list[str]:
    return [row[0] for row in transcript_rows(driver)]


def rebound_socket(port: int) -> socket.socket:
    """A socket bound to `port` again, for a server restarted where the page expects it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def test_console_reconnects_and_resumes_after_the_server_restarts(
    browser: webdriver.Chrome, settings: Settings, api: ApiClient, org: tuple[str, str]
) -> None:
    """A server of its own is stopped under the open page and started again on the same
    port; messages appended meanwhile (through the suite's server) arrive once each."""
    key = org[1]
    first_socket = bound_socket()
    port = first_socket.getsockname()[1]
    restartable = settings.model_copy(update={"port": port})
    async with serve(create_app(restartable), first_socket) as url:
        async with ApiClient(url, key) as client:
            call = await create_session(
                client, name="Dropped call", messages=user_messages("Before the restart")
            )
        await in_thread(list_and_open, browser, url, key, call, 1)

    await in_thread(wait_for_live_text, browser, "reconnecting")
    await api.data(
        ADD_MESSAGES,
        {
            "sessionId": call,
            "messages": [{"user": {"content": "Missed 1"}}, {"user": {"content": "Missed 2"}}],
        },
    )

    async with serve(create_app(restartable), rebound_socket(port)) as url:
        missed = await in_thread(wait_for_messages, browser, [2, 3])
        await in_thread(wait_for_live_text, browser, "live")
        async with ApiClient(url, key) as client:
            await client.data(
                ADD_MESSAGES,
                {"sessionId": call, "messages": [{"assistant": {"content": "After it"}}]},
            )
            after = await in_thread(wait_for_messages, browser, [4])
        seqs = await in_thread(transcript_seqs, browser)
        await in_thread(lambda: browser.get("about:blank"))  # close the websocket

    assert [missed[2]["cells"][2], missed[3]["cells"][2]] == ["Missed 1", "Missed 2"]
    assert after[4]["cells"][:3] == ["4", "assistant", "After it"]
    assert seqs == ["1", "2", "3", "4"]


def reject_key(driver: WebDriver, base_url: str) -> dict[str, Any]:
    open_console(driver, base_url, "sg_not-a-real-key")
    error = wait(driver).until(ec.visibility_of_element_located((By.ID, "error")))
    return {
        "error": error.text,
        "sessions_shown": driver.find_element(By.ID, "sessions-panel").is_displayed(),
        "stored": driver.execute_script("return sessionStorage.getItem('sessiongraph.apiKey');"),
        "url": driver.current_url,
    }


async def test_console_shows_an_error_for_a_bad_key(browser: webdriver.Chrome, server: str) -> None:
    shown = await in_thread(reject_key, browser, server)

    assert "API key or access token was not accepted" in shown["error"]
    assert "UNAUTHENTICATED" in shown["error"]
    assert shown["sessions_shown"] is False
    assert shown["stored"] is None
    assert shown["url"] == f"{server}/console"
    await in_thread(screenshot, browser, "console-bad-key")


async def test_console_page_is_served_with_a_strict_content_security_policy(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/console")
    policy = page.headers["content-security-policy"]

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # No inline scripts, styles or event handlers: the policy would block them anyway.
    assert re.findall(r"<script(?![^>]*\ssrc=)", page.text) == []
    assert "<style" not in page.text
    assert re.findall(r"\son[a-z]+=", page.text) == []
    for asset, media_type in (
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ):
        response = await http.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(media_type), asset


async def test_console_and_graphiql_assets_can_be_switched_off(settings: Settings) -> None:
    quiet = create_app(settings.model_copy(update={"console": False, "graphiql": False}))
    async with serve(quiet, bound_socket()) as url, httpx.AsyncClient(base_url=url) as client:
        console = await client.get("/console")
        script = await client.get("/console/app.js")
        graphiql = await client.get("/static/graphiql/graphiql.min.js")

    assert console.status_code == 404
    assert script.status_code == 404
    assert graphiql.status_code == 404
