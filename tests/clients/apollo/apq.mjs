// Apollo Client with its persisted-query link, unchanged, against a running sessiongraph.
//
//   SESSIONGRAPH_URL=http://127.0.0.1:8000/graphql SESSIONGRAPH_API_KEY=sg_... node apq.mjs
//
// Checks, by watching every request the client sends: a new query goes out as a hash alone,
// is answered PersistedQueryNotFound, and is sent again with its text; after that a fresh
// client sends the hash alone and gets data. The same with GET for hashed queries (the
// server needs SESSIONGRAPH_GRAPHQL_GET=true), and a mutation, which goes by POST.
// Prints one JSON line per check and exits non-zero when any fails.
import { createHash, randomUUID } from "node:crypto";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const url = process.env.SESSIONGRAPH_URL ?? "http://127.0.0.1:8000/graphql";
const key = process.env.SESSIONGRAPH_API_KEY;
if (!key) {
  console.error("Set SESSIONGRAPH_API_KEY to an API key of the server.");
  process.exit(2);
}

function client({ useGET, sent }) {
  // Records what each request carried and how it was answered, then hands the response on.
  const watchingFetch = async (input, init) => {
    const response = await fetch(input, init);
    const body = await response.clone().json();
    const requestUrl = new URL(typeof input === "string" ? input : input.url);
    const payload = init.method === "GET" ? null : JSON.parse(init.body);
    sent.push({
      method: init.method ?? "GET",
      status: response.status,
      hasQuery: payload ? "query" in payload : requestUrl.searchParams.has("query"),
      hasHash: payload
        ? Boolean(payload.extensions?.persistedQuery)
        : requestUrl.searchParams.has("extensions"),
      code: body.errors?.[0]?.extensions?.code ?? null,
    });
    return response;
  };
  const persisted = new PersistedQueryLink({
    sha256: (text) => createHash("sha256").update(text).digest("hex"),
    useGETForHashedQueries: useGET,
  });
  const http = new HttpLink({
    uri: url,
    headers: { authorization: `Bearer ${key}` },
    fetch: watchingFetch,
  });
  return new ApolloClient({ link: ApolloLink.from([persisted, http]), cache: new InMemoryCache() });
}

function expectRequests(sent, expected) {
  const seen = sent.map((r) => `${r.method} ${r.hasQuery ? "query" : "hash"} ${r.code ?? r.status}`);
  return { ok: JSON.stringify(seen) === JSON.stringify(expected), expected, seen };
}

async function check(name, run) {
  try {
    const outcome = await run();
    console.log(JSON.stringify({ check: name, ...outcome }));
    return outcome.ok;
  } catch (error) {
    console.log(JSON.stringify({ check: name, ok: false, error: String(error) }));
    return false;
  }
}

async function hashThenText(useGET) {
  const method = useGET ? "GET" : "POST";
  const query = gql(`query Apq${randomUUID().replaceAll("-", "")} { sessions(first: 1) { totalCount } }`);
  const first = [];
  const result = await client({ useGET, sent: first }).query({ query, fetchPolicy: "network-only" });
  if (typeof result.data?.sessions?.totalCount !== "number") return { ok: false, data: result.data };
  const miss = expectRequests(first, [
    `${method} hash PERSISTED_QUERY_NOT_FOUND`,
    "POST query 200",
  ]);
  if (!miss.ok) return miss;
  const second = [];
  const again = await client({ useGET, sent: second }).query({ query, fetchPolicy: "network-only" });
  if (again.data?.sessions?.totalCount !== result.data.sessions.totalCount) {
    return { ok: false, data: again.data };
  }
  const hit = expectRequests(second, [`${method} hash 200`]);
  return {
    ok: hit.ok,
    expected: [...miss.expected, "(a new client)", ...hit.expected],
    seen: [...miss.seen, "(a new client)", ...hit.seen],
  };
}

async function mutation() {
  const name = `apq ${randomUUID().slice(0, 8)}`;
  const create = gql(`mutation Create${randomUUID().replaceAll("-", "")}($name: String!) {
    createSession(input: { name: $name }) { id name }
  }`);
  const sent = [];
  const apollo = client({ useGET: true, sent });
  const created = await apollo.mutate({ mutation: create, variables: { name } });
  if (created.data?.createSession?.name !== name) return { ok: false, data: created.data };
  const again = await apollo.mutate({ mutation: create, variables: { name } });
  if (again.data?.createSession?.name !== name) return { ok: false, data: again.data };
  return expectRequests(sent, [
    "POST hash PERSISTED_QUERY_NOT_FOUND",
    "POST query 200",
    "POST hash 200",
  ]);
}

const results = [
  await check("query over POST: hash, then text, then hash alone", () => hashThenText(false)),
  await check("query over GET: hash, then text by POST, then hash alone", () => hashThenText(true)),
  await check("mutation: by POST even with GET for hashed queries", mutation),
];
process.exit(results.every(Boolean) ? 0 : 1);
