"""A web app on its own origin, in a real headless Chromium: a page served from another port
queries the API with an access token, subscribes over a websocket and over SSE (EventSource,
the token in its URL), and receives a live message on both; a page of an origin not listed in
SESSIONGRAPH_CORS_ORIGINS gets nothing through."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from sessiongraph.settings import Settings
from storage import Database
from tests.api_client import ApiClient
from tests.browser import in_thread, screenshot, wait
from tests.keys import new_org_key
from tests.operations import ADD_MESSAGES, CREATE_ACCESS_TOKEN, CREATE_SESSION_ID
from tests.serving import bound_socket, serve, serving
from tests.ws_client import wait_until

NAME = "query ($id: ID!) { session(id: $id) { name } }"
WATCH = "subscription ($id: ID!) { messageAdded(sessionId: $id) { seq content } }"

# The web app: plain JavaScript, as an app on app.example.com would talk to api.example.com.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>web app</title></head><body>
<pre id="query"></pre><pre id="ws"></pre><pre id="sse"></pre><pre id="problems"></pre>
<script>
const config = JSON.parse(%(config)s);
const show = (id, text) => { document.getElementById(id).textContent += text + "\\n"; };
fetch(config.api + "/graphql", {
  method: "POST",
  headers: {"Content-Type": "application/json", Authorization: "Bearer " + config.token},
  body: JSON.stringify({query: config.name, variables: {id: config.session}}),
}).then((r) => r.json()).then((body) => show("query", JSON.stringify(body)))
  .catch((error) => show("problems", "fetch failed: " + error));

const socket = new WebSocket(config.api.replace("http", "ws") + "/graphql", "graphql-transport-ws");
socket.onopen = () => socket.send(JSON.stringify(
  {type: "connection_init", payload: {Authorization: "Bearer " + config.token}}));
socket.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "connection_ack") {
    socket.send(JSON.stringify({id: "1", type: "subscribe",
      payload: {query: config.watch, variables: {id: config.session}}}));
  } else if (message.type === "ping") {
    socket.send(JSON.stringify({type: "pong"}));
  } else if (message.type === "next") {
    show("ws", JSON.stringify(message.payload.data));
  }
};
socket.onclose = (event) => show("problems", "websocket closed " + event.code);

const url = config.api + "/graphql?query=" + encodeURIComponent(config.watch)
  + "&variables=" + encodeURIComponent(JSON.stringify({id: config.session}))
  + "&access_token=" + encodeURIComponent(config.token);
const source = new EventSource(url);
source.addEventListener("next", (event) => show("sse", event.data));
source.onerror = () => { show("problems", "event stream failed"); source.close(); };
</script></body></html>
"""


@asynccontextmanager
async def web_app(sock: socket.socket, config: dict[str, str]) -> AsyncIterator[str]:
    """The page, served on `sock` (its own origin); yields its URL."""
    page = PAGE % {"config": orjson.dumps(orjson.dumps(config).decode()).decode()}

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async with serve(Starlette(routes=[Route("/", index)]), sock) as url:
        yield url + "/"


def text_of(driver: WebDriver, id: str) -> str:
    text: str = driver.find_element(By.ID, id).text
    return text


def open_and_wait(driver: WebDriver, url: str, id: str, text: str) -> dict[str, str]:
    driver.get(url)
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, id), text))
    return {name: text_of(driver, name) for name in ("query", "ws", "sse", "problems")}


def wait_for_both(driver: WebDriver, text: str) -> dict[str, str]:
    for id in ("ws", "sse"):
        wait(driver).until(ec.text_to_be_present_in_element((By.ID, id), text))
    return {name: text_of(driver, name) for name in ("query", "ws", "sse", "problems")}


async def a_call_and_a_token(url: str, key: str) -> tuple[str, str]:
    async with ApiClient(url, key) as api:
        created = await api.data(CREATE_SESSION_ID, {"input": {"name": "Field call"}})
        session_id: str = created["createSession"]["id"]
        minted = await api.data(CREATE_ACCESS_TOKEN, {"input": {"sessionIds": [session_id]}})
    token: str = minted["createAccessToken"]["token"]
    return session_id, token


async def test_a_page_of_a_listed_origin_queries_and_receives_live_messages(
    browser: webdriver.Chrome, settings: Settings, database: Database
) -> None:
    page_socket = bound_socket()
    origin = f"http://127.0.0.1:{page_socket.getsockname()[1]}"
    org_id, key = await new_org_key(database)
    async with serving(settings, cors_origins=[origin]) as (api_url, app):
        session_id, token = await a_call_and_a_token(api_url, key)
        config: dict[str, Any] = {
            "api": api_url, "token": token, "session": session_id, "name": NAME, "watch": WATCH,
        }  # fmt: skip
        async with web_app(page_socket, config) as page:
            shown = await in_thread(open_and_wait, browser, page, "query", "Field call")
            assert orjson.loads(shown["query"]) == {"data": {"session": {"name": "Field call"}}}
            tracker = app.state.parts.live.tracker
            await wait_until(
                lambda: sum(s.org_id == org_id for s in tracker.subscriptions) == 2,
                "the page's websocket and event stream subscribed",
            )
            async with ApiClient(api_url, key) as api:
                added = [{"user": {"content": "hello from the backend"}}]
                await api.data(ADD_MESSAGES, {"sessionId": session_id, "messages": added})
            live = await in_thread(wait_for_both, browser, "hello from the backend")
            await in_thread(screenshot, browser, "web-app-other-origin")
    expected = {"messageAdded": {"seq": 1, "content": "hello from the backend"}}
    assert [orjson.loads(line) for line in live["ws"].splitlines()] == [expected]
    assert [orjson.loads(line)["data"] for line in live["sse"].splitlines()] == [expected]
    assert live["problems"] == ""


async def test_a_page_of_an_unlisted_origin_gets_nothing_through(
    browser: webdriver.Chrome, settings: Settings, database: Database
) -> None:
    page_socket = bound_socket()
    _, key = await new_org_key(database)
    async with serving(settings, cors_origins=["https://app.example"]) as (api_url, app):
        session_id, token = await a_call_and_a_token(api_url, key)
        config: dict[str, Any] = {
            "api": api_url, "token": token, "session": session_id, "name": NAME, "watch": WATCH,
        }  # fmt: skip
        async with web_app(page_socket, config) as page:
            shown = await in_thread(open_and_wait, browser, page, "problems", "event stream failed")
            await in_thread(wait(browser).until, _problems_reported(3))
            shown = {name: await in_thread(text_of, browser, name) for name in shown}
        assert not app.state.parts.live.tracker.subscriptions
    assert shown["query"] == ""
    assert shown["ws"] == ""
    assert shown["sse"] == ""
    assert "fetch failed" in shown["problems"]
    assert "websocket closed" in shown["problems"]


def _problems_reported(count: int) -> Any:
    def reported(driver: WebDriver) -> bool:
        return len(text_of(driver, "problems").splitlines()) >= count

    return reported
