// The sessiongraph live console: plain JavaScript, no dependencies, no build step.
//
// Lists the organization's sessions over POST /graphql and shows one transcript, which
// then follows new messages over the graphql-transport-ws protocol on the same-origin
// websocket /graphql. Everything shown from the server goes in with textContent.

const KEY_STORAGE = "sessiongraph.apiKey";
const PROTOCOL = "graphql-transport-ws";
const SESSIONS_PAGE = 100;
const TRANSCRIPT_PAGE = 500;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 15000;
// Close codes after which reconnecting cannot help (bad request, key refused, ...).
const FATAL_CLOSE = new Map([
  [4400, "the server rejected a message of the console"],
  [4401, "the connection was not authorised"],
  [4403, "the API key or access token was not accepted (revoked or expired?)"],
  [4429, "the connection was initialised twice"],
]);

const SESSIONS_QUERY = `query ConsoleSessions($first: Int!) {
  sessions(first: $first, orderBy: {field: UPDATED_AT, direction: DESC}) {
    totalCount
    nodes { id name status messageCount updatedAt }
  }
}`;

const TRANSCRIPT_QUERY = `query ConsoleTranscript($id: ID!, $last: Int!) {
  session(id: $id) {
    id name status messageCount updatedAt
    messages(last: $last) {
      nodes { seq role content createdAt }
      pageInfo { hasPreviousPage }
    }
  }
}`;

const MESSAGES_SUBSCRIPTION = `subscription ConsoleMessages($id: ID!, $afterSeq: Int) {
  messageAdded(sessionId: $id, afterSeq: $afterSeq) { seq role content createdAt }
}`;

const SESSION_SUBSCRIPTION = `subscription ConsoleSession($id: ID!) {
  sessionUpdated(id: $id) { id name status messageCount updatedAt }
}`;

const graphqlUrl = new URL("graphql", document.baseURI);
const websocketUrl = new URL(graphqlUrl);
websocketUrl.protocol = graphqlUrl.protocol === "https:" ? "wss:" : "ws:";

const byId = (id) => document.getElementById(id);
const ui = {
  form: byId("key-form"),
  key: byId("api-key"),
  forget: byId("forget"),
  error: byId("error"),
  sessionsPanel: byId("sessions-panel"),
  sessionsSummary: byId("sessions-summary"),
  sessions: byId("sessions").tBodies[0],
  refresh: byId("refresh"),
  transcriptPanel: byId("transcript-panel"),
  transcriptHeading: byId("transcript-heading"),
  transcriptSummary: byId("transcript-summary"),
  transcript: byId("transcript").tBodies[0],
  live: byId("live"),
};

const state = {
  key: null,
  sessionRows: new Map(), // session id -> its <tr> in the sessions table
  open: null, // {id, lastSeq, status, messageCount, live}
  listing: 0, // bumps on every session-list load, so late answers are dropped
  generation: 0, // bumps on every transcript opened or closed, likewise
};

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// ---- rendering helpers (textContent only) ----

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
}

function describe(error) {
  if (error.code === "UNAUTHENTICATED") {
    return `The API key or access token was not accepted (UNAUTHENTICATED). ${error.message}`;
  }
  return error.code ? `${error.message} (${error.code})` : error.message;
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? "");
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function textCell(row, text, className) {
  const cell = row.insertCell();
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

function timeCell(row, iso) {
  const cell = row.insertCell();
  cell.className = "time";
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = formatTime(iso);
  cell.append(time);
  return cell;
}

function statusText(cell, status) {
  cell.textContent = status;
  cell.className = `status-${status === "ACTIVE" ? "ACTIVE" : "COMPLETED"}`;
}

function setLive(text, isLive) {
  ui.live.textContent = text;
  ui.live.classList.toggle("live", isLive);
}

// ---- HTTP ----

async function graphql(query, variables) {
  let response;
  try {
    response = await fetch(graphqlUrl, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${state.key}`,
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
      },
      body: JSON.stringify({ query, variables }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new ApiError(`Could not reach the server: ${error.message}`, "NETWORK_ERROR", 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Reported below from the status.
  }
  const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
  if (first) {
    const code = first.extensions?.code ?? `HTTP_${response.status}`;
    let message = String(first.message ?? "Request failed");
    const retry = response.headers.get("Retry-After");
    if (retry) message += ` Try again in ${retry} s.`;
    throw new ApiError(message, code, response.status);
  }
  if (!response.ok || !body || typeof body.data !== "object" || body.data === null) {
    throw new ApiError(`Unexpected answer from the server (HTTP ${response.status}).`, "", 0);
  }
  return body.data;
}

function failed(error) {
  showError(describe(error));
  if (error.code === "UNAUTHENTICATED") forgetKey({ keepError: true });
}

// ---- sessions ----

async function loadSessions() {
  const listing = ++state.listing;
  ui.sessionsSummary.textContent = "Loading…";
  let data;
  try {
    data = await graphql(SESSIONS_QUERY, { first: SESSIONS_PAGE });
  } catch (error) {
    if (listing === state.listing) failed(error);
    return;
  }
  if (listing !== state.listing) return;
  clearError();
  ui.forget.hidden = false;
  ui.sessionsPanel.hidden = false;
  renderSessions(data.sessions);
}

function renderSessions(connection) {
  state.sessionRows.clear();
  const rows = connection.nodes.map((session) => {
    const row = document.createElement("tr");
    row.dataset.sessionId = session.id;
    const nameCell = row.insertCell();
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = session.name || "(unnamed)";
    button.title = session.id;
    nameCell.append(button);
    statusText(row.insertCell(), session.status);
    textCell(row, String(session.messageCount), "num");
    timeCell(row, session.updatedAt);
    row.setAttribute("aria-selected", String(state.open?.id === session.id));
    state.sessionRows.set(session.id, row);
    return row;
  });
  ui.sessions.replaceChildren(...rows);
  const total = connection.totalCount;
  ui.sessionsSummary.textContent =
    total === 0
      ? "No sessions yet."
      : total > rows.length
        ? `The ${rows.length} most recently updated of ${total} sessions.`
        : `${total} session${total === 1 ? "" : "s"}, most recently updated first.`;
}

function updateSessionRow(session) {
  const row = state.sessionRows.get(session.id);
  if (!row) return;
  const [nameCell, statusCell, countCell, updatedCell] = row.cells;
  nameCell.firstChild.textContent = session.name || "(unnamed)";
  statusText(statusCell, session.status);
  countCell.textContent = String(session.messageCount);
  const time = updatedCell.firstChild;
  time.dateTime = session.updatedAt;
  time.textContent = formatTime(session.updatedAt);
}

// ---- one transcript ----

async function openSession(id) {
  closeSession();
  const generation = ++state.generation;
  for (const [rowId, row] of state.sessionRows) {
    row.setAttribute("aria-selected", String(rowId === id));
  }
  ui.transcriptPanel.hidden = false;
  ui.transcriptHeading.textContent = "Transcript";
  ui.transcriptSummary.textContent = "Loading…";
  ui.transcript.replaceChildren();
  setLive("offline", false);
  let data;
  try {
    data = await graphql(TRANSCRIPT_QUERY, { id, last: TRANSCRIPT_PAGE });
  } catch (error) {
    if (generation === state.generation) failed(error);
    return;
  }
  if (generation !== state.generation) return;
  const session = data.session;
  if (!session) {
    ui.transcriptSummary.textContent = "";
    showError("This session no longer exists.");
    return;
  }
  clearError();
  const messages = session.messages.nodes;
  state.open = {
    id,
    lastSeq: messages.length ? messages[messages.length - 1].seq : 0,
    status: session.status,
    messageCount: session.messageCount,
    earlier: session.messages.pageInfo.hasPreviousPage,
    live: null,
  };
  ui.transcriptHeading.textContent = `Transcript: ${session.name || "(unnamed)"}`;
  ui.transcript.replaceChildren(...messages.map(messageRow));
  describeOpenSession();
  state.open.live = new LiveTranscript(id, {
    lastSeq: () => state.open.lastSeq,
    message: appendMessage,
    session: sessionChanged,
  });
  state.open.live.start();
}

function closeSession() {
  state.generation += 1;
  if (state.open?.live) state.open.live.stop();
  state.open = null;
}

function messageRow(message) {
  const row = document.createElement("tr");
  row.dataset.seq = String(message.seq);
  textCell(row, String(message.seq), "num");
  textCell(row, String(message.role).toLowerCase(), "role");
  textCell(row, message.content ?? "", "content");
  timeCell(row, message.createdAt);
  return row;
}

function appendMessage(message) {
  const open = state.open;
  if (!open || message.seq <= open.lastSeq) return; // replayed after a reconnect
  const nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  open.lastSeq = message.seq;
  open.messageCount = Math.max(open.messageCount, message.seq);
  const listed = state.sessionRows.get(open.id)?.cells[2];
  if (listed && Number(listed.textContent) < message.seq) listed.textContent = String(message.seq);
  ui.transcript.append(messageRow(message));
  describeOpenSession();
  if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
}

function sessionChanged(session) {
  updateSessionRow(session);
  const open = state.open;
  if (!open || open.id !== session.id) return;
  open.status = session.status;
  open.messageCount = session.messageCount;
  ui.transcriptHeading.textContent = `Transcript: ${session.name || "(unnamed)"}`;
  describeOpenSession();
}

function describeOpenSession() {
  const open = state.open;
  const shown = ui.transcript.rows.length;
  let text = `${open.status === "ACTIVE" ? "Active" : "Completed"} · ${open.messageCount} message${
    open.messageCount === 1 ? "" : "s"
  }`;
  if (open.earlier) text += ` · showing the last ${shown}`;
  ui.transcriptSummary.textContent = text;
}

// ---- live updates: graphql-transport-ws, by hand ----

class LiveTranscript {
  constructor(sessionId, handlers) {
    this.sessionId = sessionId;
    this.handlers = handlers;
    this.socket = null;
    this.stopped = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.nextId = 0;
    this.messagesSubId = null;
    this.sessionSubId = null;
    this.messagesDone = false;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "Console closed the transcript");
    this.socket = null;
  }

  reconnectNow() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  connect() {
    this.retryTimer = null;
    setLive("connecting…", false);
    const socket = new WebSocket(websocketUrl, PROTOCOL);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.send(socket, {
        type: "connection_init",
        payload: { authorization: `Bearer ${state.key}` },
      });
    });
    socket.addEventListener("message", (event) => this.receive(socket, event));
    socket.addEventListener("close", (event) => this.closed(socket, event));
  }

  send(socket, message) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  subscribe(socket, query, variables) {
    this.nextId += 1;
    const id = String(this.nextId);
    this.send(socket, { id, type: "subscribe", payload: { query, variables } });
    return id;
  }

  subscribeMessages(socket) {
    this.messagesDone = false;
    this.messagesSubId = this.subscribe(socket, MESSAGES_SUBSCRIPTION, {
      id: this.sessionId,
      afterSeq: this.handlers.lastSeq(),
    });
  }

  receive(socket, event) {
    if (socket !== this.socket) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      showError("Live updates: the server sent something that is not JSON.");
      return;
    }
    switch (message.type) {
      case "connection_ack":
        this.attempt = 0;
        setLive("live", true);
        this.subscribeMessages(socket);
        this.sessionSubId = this.subscribe(socket, SESSION_SUBSCRIPTION, { id: this.sessionId });
        break;
      case "ping":
        this.send(socket, { type: "pong" });
        break;
      case "pong":
        break;
      case "next":
        this.next(socket, message.id, message.payload ?? {});
        break;
      case "error":
        this.failed(message.id, message.payload);
        break;
      case "complete":
        this.completed(message.id);
        break;
      default:
        break;
    }
  }

  next(socket, id, payload) {
    if (Array.isArray(payload.errors) && payload.errors.length) {
      showError(`Live updates: ${describeGraphQLError(payload.errors[0])}`);
    }
    const data = payload.data ?? {};
    if (id === this.messagesSubId && data.messageAdded) {
      this.handlers.message(data.messageAdded);
    } else if (id === this.sessionSubId && data.sessionUpdated) {
      this.handlers.session(data.sessionUpdated);
      // Reopened after it completed: follow its messages again.
      if (data.sessionUpdated.status === "ACTIVE" && this.messagesDone) {
        this.subscribeMessages(socket);
      }
    }
  }

  failed(id, errors) {
    const first = Array.isArray(errors) && errors.length ? errors[0] : { message: "failed" };
    showError(`Live updates stopped: ${describeGraphQLError(first)}`);
    this.completed(id);
  }

  completed(id) {
    if (id === this.messagesSubId) {
      this.messagesDone = true;
      setLive("ended", false);
    }
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    if (this.stopped) return;
    const fatal = FATAL_CLOSE.get(event.code);
    if (fatal) {
      setLive("offline", false);
      showError(`Live updates stopped: ${fatal} (websocket closed with ${event.code}).`);
      this.stopped = true;
      return;
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.5 + Math.random() / 2));
    this.attempt += 1;
    setLive(`reconnecting in ${Math.ceil(jittered / 1000)} s`, false);
    this.retryTimer = setTimeout(() => this.connect(), jittered);
  }
}

function describeGraphQLError(error) {
  const code = error?.extensions?.code;
  const message = String(error?.message ?? "unknown error");
  return code ? `${message} (${code})` : message;
}

// ---- the key ----

function useKey(key) {
  state.key = key;
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    // Storage may be disabled; the key then lasts until the page is left.
  }
  closeSession();
  ui.transcriptPanel.hidden = true;
  loadSessions();
}

function forgetKey({ keepError = false } = {}) {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Nothing stored.
  }
  state.key = null;
  state.listing += 1;
  closeSession();
  state.sessionRows.clear();
  ui.sessions.replaceChildren();
  ui.sessionsPanel.hidden = true;
  ui.transcriptPanel.hidden = true;
  ui.forget.hidden = true;
  if (!keepError) {
    clearError();
    ui.key.value = "";
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.key.value.trim();
  if (!key) {
    showError("Enter an API key or an access token.");
    return;
  }
  clearError();
  useKey(key);
});

ui.forget.addEventListener("click", () => {
  forgetKey();
  ui.key.focus();
});

ui.refresh.addEventListener("click", () => loadSessions());

ui.sessions.addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-session-id]");
  if (row) openSession(row.dataset.sessionId);
});

window.addEventListener("online", () => state.open?.live?.reconnectNow());

let saved = null;
try {
  saved = sessionStorage.getItem(KEY_STORAGE);
} catch {
  // Storage disabled.
}
if (saved) {
  ui.key.value = saved;
  useKey(saved);
} else {
  ui.key.focus();
}
