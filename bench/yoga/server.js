// The Node peer of bench.http: GraphQL Yoga and the official MongoDB driver, answering the
// benchmark's operations with the JSON sessiongraph gives and the database commands its storage
// layer sends (see bench/baseline.py for the list), behind the same API key check.
//
//   MONGODB_URI=... SESSIONGRAPH_DB_NAME=... node server.js --port 8002
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import DataLoader from 'dataloader';
import { createSchema, createYoga } from 'graphql-yoga';
import { MongoClient } from 'mongodb';

// No secrets, and no message windows (storage/message_windows.py): the peer reads messages.
const PUBLIC_FIELDS = { phone_number_secrets: 0, message_windows: 0 };
const KEY_PREFIX = 'sg_';
const PAGE_DEFAULTS = { sessions: 20, messages: 50 };
const ROLES = {
  system: 'SystemMessage',
  user: 'UserMessage',
  assistant: 'AssistantMessage',
  tool: 'ToolMessage',
  developer: 'DeveloperMessage',
};

// The part of sessiongraph's schema the benchmark reads, with the same names and types.
const typeDefs = /* GraphQL */ `
  scalar DateTime
  enum SessionStatus { ACTIVE COMPLETED }
  enum MessageRole { SYSTEM USER ASSISTANT TOOL DEVELOPER }
  interface Message {
    id: ID!
    sessionId: ID!
    seq: Int!
    role: MessageRole!
    content: String
    createdAt: DateTime!
  }
  ${Object.values(ROLES)
    .map(
      (name) => `type ${name} implements Message {
        id: ID! sessionId: ID! seq: Int! role: MessageRole! content: String createdAt: DateTime!
      }`,
    )
    .join('\n')}
  type MessageConnection { nodes: [Message!]! totalCount: Int! }
  type Session {
    id: ID!
    name: String
    status: SessionStatus!
    messageCount: Int!
    createdAt: DateTime!
    updatedAt: DateTime!
    messages(first: Int, last: Int): MessageConnection!
  }
  type SessionConnection { nodes: [Session!]! }
  type Query {
    session(id: ID!): Session
    sessions(first: Int): SessionConnection!
  }
`;

function argument(name, fallback) {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const client = new MongoClient(process.env.MONGODB_URI, {
  serverSelectionTimeoutMS: 5000,
  connectTimeoutMS: 5000,
  appName: 'bench-yoga',
});
const db = client.db(process.env.SESSIONGRAPH_DB_NAME ?? 'sessiongraph');
const collections = {
  sessions: db.collection('sessions'),
  messages: db.collection('messages'),
  keys: db.collection('api_keys'),
};
const cacheMs = 1000 * Number(process.env.SESSIONGRAPH_AUTH_CACHE_SECONDS ?? '5');
const verified = new Map();

// The organization of a bearer key: its SHA-256 looked up in api_keys, remembered for a while.
async function organizationOf(authorization) {
  const [scheme, key = ''] = (authorization ?? '').trim().split(/\s+/, 2);
  if (scheme?.toLowerCase() !== 'bearer' || !key.startsWith(KEY_PREFIX)) return null;
  const now = Date.now();
  const cached = verified.get(key);
  if (cached && cached.until > now) return cached.orgId;
  const doc = await collections.keys.findOne(
    { key_hash: createHash('sha256').update(key).digest('hex'), revoked_at: null },
    { projection: { org_id: 1 } },
  );
  if (!doc) return null;
  if (cacheMs > 0) verified.set(key, { orgId: String(doc.org_id), until: now + cacheMs });
  return String(doc.org_id);
}

// The server's planner, as sessiongraph's Database.connect learns it: SecantusDB ("simple")
// scans the collection for an `$or`, so the storage layer sends other shapes there.
let planner = 'full';
const PARALLEL_RANGES = 8;
const MINUTE = 60_000;
const FIRST_WINDOW = MINUTE;
const LAST_WINDOW = 3650 * 24 * 60 * MINUTE;
const WINDOWS_MAX = Math.ceil(Math.log(LAST_WINDOW / FIRST_WINDOW) / Math.log(4)) + 1;

// storage.sessions.next_span: the next window's width, by the density of the bounded ones.
function nextSpan(span, got, measured, measuredFound, remaining) {
  if (!measuredFound) return span * (got ? 4 : 16);
  const estimate = measured * ((remaining * 1.2) / measuredFound);
  return Math.min(Math.max(estimate, span), span * 16);
}
const NEWEST_FIRST = { created_at: -1, _id: -1 };

function rangeFind(wanted) {
  const clauses = wanted.map(([sid, lo, hi]) => ({ session_id: sid, seq: { $gte: lo, $lte: hi } }));
  const expected = wanted.reduce((sum, [, lo, hi]) => sum + hi - lo + 1, 0);
  return collections.messages
    .find(clauses.length === 1 ? clauses[0] : { $or: clauses })
    .sort({ session_id: 1, seq: 1 })
    .batchSize(expected + 1)
    .toArray();
}

// MessageStore.in_ranges: one `$or`, or on a "simple" planner one find per range, 8 at a time.
async function inRanges(wanted) {
  if (planner !== 'simple' || wanted.length <= 1) return rangeFind(wanted);
  const pages = new Array(wanted.length);
  let next = 0;
  async function worker() {
    while (next < wanted.length) {
      const index = next++;
      pages[index] = await rangeFind([wanted[index]]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL_RANGES, wanted.length) }, worker));
  return pages.flat();
}

// SessionStore.list, unfiltered, newest first: one `$and` query, or on a "simple" planner
// time windows growing back from now until the page is full (SessionStore._scan). The bounds
// are written as `$gt`/`$lte`, as descending_key_bounds writes them.
async function newestSessions(orgId, wanted) {
  const page = (createdAt, n) =>
    collections.sessions
      .find({ org_id: orgId, created_at: createdAt }, { projection: PUBLIC_FIELDS })
      .sort(NEWEST_FIRST)
      .limit(n)
      .toArray();
  if (planner !== 'simple') {
    return collections.sessions
      .find({ $and: [{ org_id: orgId }] }, { projection: PUBLIC_FIELDS })
      .sort(NEWEST_FIRST)
      .limit(wanted)
      .toArray();
  }
  const found = [];
  let edge = null;
  let span = FIRST_WINDOW;
  let windows = 0;
  let measured = 0;
  let measuredFound = 0;
  const now = Date.now();
  while (found.length < wanted) {
    if (span > LAST_WINDOW || windows === WINDOWS_MAX) {
      const bound = edge === null ? {} : { $lte: new Date(edge - 1) };
      return found.concat(await page(bound, wanted - found.length));
    }
    const far = (edge ?? now) - span;
    const window = { $gt: new Date(far - 1) };
    if (edge !== null) window.$lte = new Date(edge - 1);
    const got = await page(window, wanted - found.length);
    found.push(...got);
    windows += 1;
    if (edge !== null) {
      measured += span;
      measuredFound += got.length;
    }
    edge = far;
    span = nextSpan(span, got.length, measured, measuredFound, wanted - found.length);
  }
  return found;
}

// Per request: sessions by id in one find, and several sessions' message ranges in one batch.
function loaders(orgId) {
  return {
    sessionById: new DataLoader(async (ids) => {
      const found = await collections.sessions
        .find({ _id: { $in: [...ids] }, org_id: orgId }, { projection: PUBLIC_FIELDS })
        .toArray();
      const byId = new Map(found.map((doc) => [doc._id, doc]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    messagesBySeqRange: new DataLoader(
      async (ranges) => {
        const wanted = ranges.filter(([, lo, hi]) => lo <= hi);
        if (wanted.length === 0) return ranges.map(() => []);
        const docs = await inRanges(wanted);
        const bySession = new Map();
        for (const doc of docs) {
          if (doc.org_id !== orgId) continue;
          if (!bySession.has(doc.session_id)) bySession.set(doc.session_id, []);
          bySession.get(doc.session_id).push(doc);
        }
        return ranges.map(([sid, lo, hi]) =>
          (bySession.get(sid) ?? []).filter((m) => m.seq >= lo && m.seq <= hi),
        );
      },
      { cacheKeyFn: (range) => range.join('\u0000') },
    ),
  };
}

const resolvers = {
  DateTime: {
    serialize: (value) => value.toISOString(),
  },
  Message: {
    __resolveType: (message) => ROLES[message.role],
  },
  ...Object.fromEntries(
    Object.values(ROLES).map((name) => [
      name,
      {
        id: (m) => m._id,
        sessionId: (m) => m.session_id,
        role: (m) => m.role.toUpperCase(),
        content: (m) => m.content ?? m.message ?? null,
        createdAt: (m) => m.created_at,
      },
    ]),
  ),
  Session: {
    id: (s) => s._id,
    name: (s) => s.name ?? null,
    status: (s) => (s.status === 'active' && s.expires_at > new Date() ? 'ACTIVE' : 'COMPLETED'),
    messageCount: (s) => s.message_count,
    createdAt: (s) => s.created_at,
    updatedAt: (s) => s.updated_at,
    messages: async (s, { first, last }, context) => {
      const count = s.message_count;
      let lo;
      let hi;
      if (last != null && first == null) {
        hi = count;
        lo = Math.max(1, count - last + 1);
      } else {
        lo = 1;
        hi = Math.min(first ?? PAGE_DEFAULTS.messages, count);
      }
      const nodes = await context.loaders.messagesBySeqRange.load([s._id, lo, hi]);
      return { nodes, totalCount: count };
    },
  },
  Query: {
    session: (_, { id }, context) => context.loaders.sessionById.load(id),
    sessions: async (_, { first }, context) => {
      const limit = first ?? PAGE_DEFAULTS.sessions;
      const docs = await newestSessions(context.orgId, limit + 1);
      return { nodes: docs.slice(0, limit) };
    },
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  graphqlEndpoint: '/graphql',
  graphiql: false,
  logging: 'warn',
  context: ({ req }) => ({ orgId: req.orgId, loaders: loaders(req.orgId) }),
});

const server = createServer(async (req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    return;
  }
  const orgId = await organizationOf(req.headers.authorization);
  if (orgId === null) {
    res
      .writeHead(401, { 'content-type': 'application/json' })
      .end('{"errors":[{"message":"unauthenticated"}]}');
    return;
  }
  req.orgId = orgId;
  yoga(req, res);
});

await client.connect();
if ('secantusVersion' in (await client.db('admin').command({ buildInfo: 1 }))) planner = 'simple';
server.listen(Number(argument('--port', '8002')), argument('--host', '127.0.0.1'));
// Stopped between runs: requests still in flight are dropped, as uvicorn's are not, but nothing
// is measured then.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
