"""GraphiQL: Strawberry's page, made ours (title, example operation, a header template) and
loading React, GraphiQL and their styles from `sessiongraph/static/graphiql/` instead of a
CDN, which this module also serves."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

ASSETS_DIRECTORY = Path(__file__).resolve().parent / "static" / "graphiql"

EXAMPLE_OPERATION = """# Welcome to sessiongraph. Put your API key in the Headers tab below:
#   {"Authorization": "Bearer sg_..."}
# then run this (Ctrl-Enter).

query RecentSessions {
  sessions(first: 5) {
    totalCount
    nodes {
      id
      name
      status
      messageCount
      messages(last: 3) { nodes { seq role content } }
    }
  }
}
"""


GRAPHIQL_ASSETS_PATH = "/static/graphiql"
"""Where `graphiql_asset_routes` serves the files of sessiongraph/static/graphiql/."""

GRAPHIQL_ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": (
        "react-dom.production.min.js"
    ),
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": (
        "plugin-explorer.umd.js"
    ),
}
"""Strawberry's CDN URLs and our unmodified copies of those files (so the page's integrity
hashes still hold): GraphiQL works offline and tells no CDN who uses it."""

_REMOTE_ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](https?://[^"']+)["']""")


def graphiql_page() -> str:
    """Strawberry's GraphiQL page with our title, example and a header template, loading
    its scripts and styles from this server."""
    html = get_graphql_ide_html("graphiql")
    for url in set(_REMOTE_ASSET.findall(html)):
        if url not in GRAPHIQL_ASSETS:
            raise RuntimeError(
                f"GraphiQL's page loads {url}, which has no local copy: vendor it into "
                "sessiongraph/static/graphiql/ (see the README there)."
            )
        html = html.replace(url, f"{GRAPHIQL_ASSETS_PATH}/{GRAPHIQL_ASSETS[url]}")
    start = html.index("const EXAMPLE_QUERY = `") + len("const EXAMPLE_QUERY = `")
    end = html.index("`;", start)
    html = html[:start] + EXAMPLE_OPERATION + html[end:]
    return html.replace(
        "<title>Strawberry GraphiQL</title>", "<title>sessiongraph</title>"
    ).replace(
        "headers: headers,",
        'headers: headers, defaultHeaders: \'{"Authorization": "Bearer YOUR_API_KEY"}\',',
    )


def graphiql_asset_routes() -> list[BaseRoute]:
    """GraphiQL's scripts and styles, under GRAPHIQL_ASSETS_PATH."""
    return [
        Mount(
            GRAPHIQL_ASSETS_PATH,
            app=StaticFiles(directory=ASSETS_DIRECTORY),
            name="graphiql-assets",
        )
    ]
