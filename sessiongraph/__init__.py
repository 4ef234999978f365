"""sessiongraph: a GraphQL API for conversation sessions on MongoDB.

The app factory is `sessiongraph.app.create_app`, settings live in `sessiongraph.settings`
and the command line in `sessiongraph.cli`.
"""

__version__ = "0.1.0"
