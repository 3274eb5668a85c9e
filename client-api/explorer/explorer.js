// The Shardspace explorer: one page over the API's own endpoints, no framework, nothing
// fetched from elsewhere. Views by the URL's hash: #/ (the cluster, its throughput and
// the live feed), #/tx/ID, #/object/ID, #/contract/NAME[?status=&field=&equals=] (its
// objects). Values come from the ledger, so every text goes in with textContent, never
// as HTML.
"use strict";

const FEED_ROWS = 50;
const OBJECT_ROWS = 50; // objects asked a page in a contract's view
const REFRESH_MS = 2000;
const feed = []; // the last decided events, newest first

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind || text}` }, text);
}

function txLink(id) {
  return id ? el("a", { href: `#/tx/${id}`, class: "id" }, id) : el("span", { class: "muted" }, "-");
}

function objectLink(id) {
  return el("a", { href: `#/object/${id}`, class: "id" }, id);
}

function contractLink(name) {
  return el("a", { href: `#/contract/${encodeURIComponent(name)}` }, name);
}

function rows(pairs) {
  return el("table", {}, pairs.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value))));
}

async function api(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

function show(...sections) {
  const view = document.getElementById("view");
  view.replaceChildren(...sections);
}

function failure(message) {
  return el("section", {}, el("p", { class: "error" }, message));
}

// The cluster: health in the header, shards and replicas on the home view.
let cluster = null;
async function refreshCluster() {
  const { status, body } = await api("/v1/cluster").catch(() => ({ status: 0, body: {} }));
  const health = document.getElementById("health");
  if (status !== 200) {
    health.replaceChildren("API unreachable");
    health.className = "badge bad";
    return;
  }
  cluster = body;
  document.getElementById("cluster-name").textContent = body.cluster;
  health.textContent = body.healthy ? "healthy" : "unhealthy";
  health.className = `badge ${body.healthy ? "ok" : "bad"}`;
  const section = document.getElementById("cluster");
  if (section) section.replaceWith(clusterSection());
}

function clusterSection() {
  const shards = (cluster && cluster.shards) || [];
  const table = el("table", {},
    el("tr", {}, ["shard", "replica", "address", "state", "height", "round", "pending", "leads"].map((h) => el("th", {}, h))),
    shards.flatMap((shard) => shard.replicas.map((replica) => el("tr", {},
      el("td", {}, `${shard.id}${replica.id === 0 ? (shard.healthy ? " (healthy)" : " (no quorum)") : ""}`),
      el("td", {}, replica.id),
      el("td", { class: "id" }, replica.address),
      el("td", { class: replica.up ? "" : "down" }, replica.up ? "up" : "down"),
      el("td", {}, replica.height ?? "-"),
      el("td", {}, replica.round ?? "-"),
      el("td", {}, replica.pending ?? "-"),
      el("td", { class: "leader" }, replica.id === shard.leader ? "leads" : ""),
    ))));
  const contracts = ((cluster && cluster.contracts) || []).flatMap((name, index) => [index ? ", " : "", contractLink(name)]);
  return el("section", { id: "cluster" }, el("h2", {}, "Cluster"), table, el("p", { class: "muted" }, "contracts: ", contracts));
}

// Throughput (decided attempts a second, cluster-wide) and this API's latency, over the last minutes.
async function refreshStats() {
  const section = document.getElementById("stats");
  if (!section) return;
  const { status, body } = await api("/v1/stats").catch(() => ({ status: 0 }));
  if (status !== 200) return;
  const counts = body.decided_per_second;
  const top = Math.max(1, ...counts);
  const bars = el("div", { class: "bars", title: `decided a second, the last ${counts.length} s` },
    counts.map((count) => el("div", { style: `height:${(100 * count) / top}%`, title: `${count}/s` })));
  const recent = counts.slice(-60);
  const rate = recent.reduce((a, b) => a + b, 0) / Math.max(1, recent.length);
  const latency = body.latency_ms;
  section.replaceChildren(
    el("h2", {}, "Throughput and latency"),
    bars,
    rows([
      ["decided, last minute", `${rate.toFixed(1)} a second (peak ${top})`],
      ["latency through this API", latency.samples ? `p50 ${latency.p50} ms, p99 ${latency.p99} ms (${latency.samples} in the last ${body.window_seconds} s)` : "no submission yet"],
    ]));
}

// The live feed of decided transactions, from the cluster-wide event stream.
function feedRow(event) {
  return el("tr", { "data-tx": event.txId, "data-seen-ms": event.seenMs },
    el("td", { class: "muted" }, event.seen),
    el("td", {}, txLink(event.txId)),
    el("td", {}, `${event.contract}.${event.method}`),
    el("td", {}, badge(event.outcome), event.reason ? ` ${event.reason}` : ""),
    el("td", {}, event.attempt),
    el("td", {}, event.shards.join(", ")));
}

function feedSection() {
  return el("section", { id: "feed" }, el("h2", {}, "Decided transactions (live)"),
    el("table", {},
      el("thead", {}, el("tr", {}, ["seen", "transaction", "call", "outcome", "attempt", "shards"].map((h) => el("th", {}, h)))),
      el("tbody", {}, feed.map(feedRow))));
}

function listen() {
  const source = new EventSource("/v1/events");
  // Open: every attempt decided from now on will show (the page's test waits for this).
  source.addEventListener("open", () => (document.body.dataset.feed = "open"));
  source.addEventListener("error", () => (document.body.dataset.feed = "reconnecting"));
  source.addEventListener("decided", (message) => {
    const event = JSON.parse(message.data);
    event.seenMs = Date.now();
    event.seen = new Date(event.seenMs).toLocaleTimeString();
    feed.unshift(event);
    feed.length = Math.min(feed.length, FEED_ROWS);
    const body = document.querySelector("#feed tbody");
    if (body) {
      body.prepend(feedRow(event));
      while (body.children.length > FEED_ROWS) body.lastChild.remove();
    }
  });
}

async function home() {
  show(clusterSection(), el("section", { id: "stats" }, el("h2", {}, "Throughput and latency"), "…"), feedSection());
  refreshStats();
}

async function transaction(id) {
  const { status, body } = await api(`/v1/transactions/${id}`);
  if (status !== 200) return show(failure(body.error ? body.error.message : `no answer (${status})`));
  const tx = body.transaction || {};
  const shards = el("table", {},
    el("tr", {}, ["shard", "vote", "reason", "decision", "attempt"].map((h) => el("th", {}, h))),
    Object.entries(body.shards).map(([shard, result]) => el("tr", {},
      el("td", {}, shard), el("td", {}, result.vote), el("td", {}, result.reason ?? "-"),
      el("td", {}, result.decision ? badge(result.decision) : "undecided"), el("td", {}, result.attempt))));
  const ids = (list) => (list && list.length ? el("div", {}, list.map((id) => el("div", {}, objectLink(id)))) : "-");
  const outputs = (body.outputs || []).map((id, index) => el("div", {}, objectLink(id), " ", el("code", {}, (tx.outputs || [])[index] ?? "")));
  show(
    el("section", {}, el("h2", {}, "Transaction"), rows([
      ["id", el("span", { class: "id" }, body.txId)],
      ["outcome", el("span", {}, el("span", { id: "tx-outcome" }, badge(body.outcome)), body.reason ? ` ${body.reason}` : "")],
      ["call", tx.contractID ? `${tx.contractID}.${tx.methodID}` : "-"],
      ["attempt", body.attempt],
      ["inputs", ids(tx.inputIDs)],
      ["references", ids(tx.referenceInputIDs)],
      ["outputs", outputs.length ? el("div", {}, outputs) : "-"],
      ["parameters", tx.parameters ? el("pre", {}, JSON.stringify(tx.parameters)) : "-"],
    ])),
    el("section", {}, el("h2", {}, "Votes and decision by shard"), shards));
}

async function object(id) {
  const { status, body } = await api(`/v1/objects/${id}`);
  if (status !== 200) return show(failure(body.error ? body.error.message : `no answer (${status})`));
  const history = el("section", { id: "history" }, el("h2", {}, "History"), "…");
  show(
    el("section", {}, el("h2", {}, "Object"), rows([
      ["id", el("span", { class: "id" }, body.id)],
      ["status", el("span", { id: "object-status" }, badge(body.status))],
      ["contract", contractLink(body.contract)],
      ["shard", body.shard],
      ["value", el("pre", {}, body.value)],
      ["created by", txLink(body.createdBy)],
      ["consumed by", txLink(body.consumedBy)],
      ["locked by", body.lockedBy ? txLink(body.lockedBy) : "-"],
    ])),
    history);
  // Before it: what its creating transaction consumed; after it: what its consuming one created.
  const around = async (tx, field) => {
    if (!tx) return [];
    const { status, body: read } = await api(`/v1/transactions/${tx}`);
    if (status !== 200) return [];
    return field === "inputs" ? ((read.transaction || {}).inputIDs || []) : (read.outputs || []);
  };
  const [before, after] = await Promise.all([around(body.createdBy, "inputs"), around(body.consumedBy, "outputs")]);
  const list = (ids) => (ids.length ? el("div", {}, ids.map((other) => el("div", {}, objectLink(other)))) : "none");
  history.replaceChildren(el("h2", {}, "History"), rows([
    ["objects before (consumed by its creation)", list(before)],
    ["created by", txLink(body.createdBy)],
    ["consumed by", txLink(body.consumedBy)],
    ["objects after (created by its consumption)", list(after)],
  ]));
}

// A contract's objects, filtered (`/v1/objects`): by status, and by a field of their values
// (bank's accounts of one owner: field owner = the key), a page at a time along `next`.
async function contract(name, params) {
  const status = params.get("status") || "active";
  const [field, equals] = [params.get("field") || "", params.get("equals") || ""];
  const query = new URLSearchParams({ contract: name, status, limit: String(OBJECT_ROWS) });
  if (field) {
    query.set("field", field);
    query.set("equals", equals);
  }
  const statuses = el("select", { id: "objects-status" },
    ["active", "locked", "inactive"].map((kind) => el("option", kind === status ? { value: kind, selected: "" } : { value: kind }, kind)));
  const fieldInput = el("input", { id: "objects-field", placeholder: "field (as owner)", value: field });
  const equalsInput = el("input", { id: "objects-equals", placeholder: "value", value: equals });
  const form = el("form", { id: "objects-filter" }, statuses, " ", fieldInput, " = ", equalsInput, " ", el("button", { type: "submit" }, "List"));
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const asked = new URLSearchParams({ status: statuses.value });
    if (fieldInput.value) {
      asked.set("field", fieldInput.value.trim());
      asked.set("equals", equalsInput.value.trim());
    }
    location.hash = `#/contract/${encodeURIComponent(name)}?${asked}`;
  });
  const table = el("table", { id: "objects" }, el("tr", {}, ["object", "status", "value"].map((h) => el("th", {}, h))));
  const note = el("p", { class: "muted", id: "objects-count" }, "…");
  const more = el("button", { type: "button", id: "objects-more", hidden: "" }, "more");
  show(el("section", {}, el("h2", {}, "Objects of ", el("span", { id: "contract-name" }, name)), form, table, note, more));
  let listed = 0;
  const load = async () => {
    const { status: code, body } = await api(`/v1/objects?${query}`);
    if (code !== 200) return (note.textContent = body.error ? body.error.message : `no answer (${code})`);
    for (const found of body.objects) {
      table.append(el("tr", {}, el("td", {}, objectLink(found.id)), el("td", {}, badge(found.status)), el("td", {}, el("code", { class: "value" }, found.value))));
    }
    listed += body.objects.length;
    if (body.more) query.set("after", body.next);
    note.textContent = `${listed} listed${body.more ? "" : ", no more"}`;
    more.hidden = !body.more;
  };
  more.addEventListener("click", load);
  await load();
}

function route() {
  const [path, search] = (location.hash || "#/").split("?");
  const [, kind, id] = path.split("/");
  if (kind === "tx" && id) return transaction(id);
  if (kind === "object" && id) return object(id);
  if (kind === "contract" && id) return contract(decodeURIComponent(id), new URLSearchParams(search || ""));
  return home();
}

document.getElementById("search").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const asked = document.getElementById("search-id").value.trim();
  if (((cluster && cluster.contracts) || []).includes(asked)) return (location.hash = `#/contract/${encodeURIComponent(asked)}`);
  const id = asked.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(id)) return show(failure(`${id || "nothing"}: an id is 64 hex digits, or name a contract`));
  const asTx = await api(`/v1/transactions/${id}`);
  if (asTx.status === 200) return (location.hash = `#/tx/${id}`);
  const asObject = await api(`/v1/objects/${id}`);
  if (asObject.status === 200) return (location.hash = `#/object/${id}`);
  show(failure(`no transaction or object ${id} is known to the cluster`));
});

window.addEventListener("hashchange", route);
listen();
refreshCluster().then(route);
setInterval(refreshCluster, REFRESH_MS);
setInterval(refreshStats, REFRESH_MS);
