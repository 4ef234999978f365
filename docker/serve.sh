#!/bin/sh
# Start command of the sessiongraph image (installed as /usr/local/bin/sessiongraph-serve).
#
# Runs uvicorn directly (not `sessiongraph serve`) so that the event loop, HTTP parser,
# websocket implementation and proxy-header handling are chosen explicitly:
#   uvloop + httptools + websockets-sansio (what uvicorn's `auto` picks, so what the test suite
#   runs; `--ws websockets` is deprecated in uvicorn 0.54), per-message deflate off (as
#   `sessiongraph serve` does), X-Forwarded-* honoured from the addresses in FORWARDED_ALLOW_IPS.
# Every process reads its settings from the environment (sessiongraph.settings.Settings);
# extra arguments are passed on to uvicorn, e.g. `sessiongraph-serve --limit-concurrency 2000`.
set -eu

# The image has no embedded database (SecantusDB is a GPL development tool and is not
# installed): without a MongoDB URI the app would try to start one and fail less clearly.
if [ -z "${MONGODB_URI:-}" ] && [ -z "${SESSIONGRAPH_MONGODB_URI:-}" ]; then
    echo "sessiongraph: MONGODB_URI is not set; this image needs an external MongoDB" \
        "(a replica set, e.g. mongodb://mongo:27017/?replicaSet=rs0)." >&2
    exit 2
fi

# SESSIONGRAPH_LOG_LEVEL is upper case (DEBUG, INFO, WARNING, ERROR); uvicorn wants lower case.
level="${SESSIONGRAPH_LOG_LEVEL:-INFO}"
log_level=$(printf '%s' "$level" | tr '[:upper:]' '[:lower:]')

# The logging configuration `sessiongraph serve` gives uvicorn (uvicorn's own plus the project's
# loggers at SESSIONGRAPH_LOG_LEVEL), written as JSON for --log-config. Without
# sessiongraph.log_config only uvicorn's loggers are configured, and the project's loggers
# reach stderr through Python's last-resort handler (warnings and errors only).
if python -c 'import sessiongraph.log_config' 2>/dev/null; then
    log_config_file="${TMPDIR:-/tmp}/sessiongraph-logging.json"
    python -c 'import json, sys
from sessiongraph.log_config import log_config
with open(sys.argv[2], "w") as f:
    json.dump(log_config(sys.argv[1], sys.argv[3]), f)' "$level" "$log_config_file" \
        "${SESSIONGRAPH_LOG_FORMAT:-text}"
    set -- --log-config "$log_config_file" "$@"
fi

exec uvicorn sessiongraph.app:create_app --factory \
    --host "${SESSIONGRAPH_HOST:-0.0.0.0}" \
    --port "${SESSIONGRAPH_PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-1}" \
    --loop uvloop \
    --http httptools \
    --ws websockets-sansio \
    --ws-per-message-deflate false \
    --proxy-headers \
    --no-access-log \
    --log-level "$log_level" \
    "$@"
