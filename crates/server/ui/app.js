// The aitrail dashboard: one page, routed by the URL's hash, built from the /v1 API with
// the session cookie. Every element is made with h() (textContent, never innerHTML), so
// nothing a record holds can become markup.

import { checkRecord, parseCheckpoint, parseVerifierKey, verifyNote } from "./proof.js";
import { barList, colour, compact, stackedBars } from "./charts.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let session = null;

// ---------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, problem) {
    const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`);
    super([problem.detail || problem.title || `HTTP ${status}`, ...fields].join("; "));
    this.status = status;
  }
}

async function api(path, { method = "GET", body, text = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (res.status === 401 && session) {
    session = null;
    go("#/signin");
  }
  if (!res.ok) {
    let problem = {};
    try {
      problem = await res.json();
    } catch {
      /* not problem+json */
    }
    throw new ApiError(res.status, problem);
  }
  if (res.status === 204) return null;
  return text ? res.text() : res.json();
}

const can = {
  read: () => session && session.role !== "ingest",
  write: () => session && (session.role === "ingest" || session.role === "admin"),
  audit: () => session && (session.role === "auditor" || session.role === "admin"),
  admin: () => session && session.role === "admin",
};

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function params() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

function fmtTime(t) {
  return t ? t.replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

function fmtCost(cost) {
  return Object.entries(cost || {})
    .filter(([, v]) => typeof v === "number")
    .map(([cur, v]) => `${v.toFixed(v < 1 ? 4 : 2)} ${cur}`.trim())
    .join(", ");
}

function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** Nodes to put in an element: nested lists flattened, absent ones (null, false) dropped. */
function present(...nodes) {
  return nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false);
}

function page(title, ...content) {
  document.title = `${title} · aitrail`;
  delete main.dataset.ready;
  main.replaceChildren(h("h1", {}, title), ...present(content));
  main.focus({ preventScroll: true });
}

/** "First page" and "Next page" links of a cursor-paged listing at `route`. */
function pageLinks(route, values, nextCursor) {
  const first = new URLSearchParams(values);
  first.delete("cursor");
  const next = new URLSearchParams({ ...Object.fromEntries(first), cursor: nextCursor });
  return present(
    values.get("cursor") ? h("a", { href: `${route}?${first}`, class: "button secondary" }, "First page") : null,
    nextCursor ? h("a", { href: `${route}?${next}`, class: "button secondary", rel: "next" }, "Next page") : null,
  );
}

/** Mark the page as drawn from the API, for whoever waits on it (the browser tests). */
function ready() {
  main.dataset.ready = location.hash;
}

function field(label, input, hint) {
  const id = input.id || `f-${input.name}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

function input(name, attrs = {}) {
  return h("input", { name, type: "text", ...attrs });
}

function select(name, options, value) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) if (String(v).trim() !== "") out[k] = String(v).trim();
  return out;
}

/** A local datetime-local value → RFC 3339 UTC. */
function toUtc(v) {
  return v ? new Date(v).toISOString() : v;
}

function fromUtc(v) {
  if (!v) return "";
  const d = new Date(v);
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d - off).toISOString().slice(0, 16);
}

// The API's listing filters, as the logs, usage and export pages offer them. Each of these
// may be given several values: a record matching any of them is listed.
const TEXT_FILTERS = [
  ["model_provider", "Model Provider"],
  ["model_name", "Model Name"],
  ["model_version", "Model Version"],
  ["deployment_id", "Deployment ID"],
  ["safety_mode", "Safety Mode"],
  ["operation_type", "Operation"],
  ["user_id", "User"],
  ["agent_id", "Agent"],
  ["session_id", "Session"],
  ["feature_code", "Feature"],
  ["external_id", "External ID"],
  ["id", "Record ID"],
];

const TEMPERATURE_FILTERS = [
  ["temperature_gt", "Temperature >"],
  ["temperature_min", "Temperature ≥"],
  ["temperature_lt", "Temperature <"],
  ["temperature_max", "Temperature ≤"],
];

// Exact texts, looked up by keyed hash: the listing takes them; usage and export do not.
const CONTENT_FILTERS = [
  ["prompt_text", "Prompt (exact text)"],
  ["response_text", "Response (exact text)"],
];

/** One input per value of a filter that takes several, and a button to add another. */
function multiField(name, label, values) {
  const list = h("div", { class: "values" });
  const add = (value) => {
    const n = list.children.length;
    const el = input(name, { value, id: n ? `f-${name}-${n + 1}` : `f-${name}`, "aria-label": n ? `${label} ${n + 1}` : null });
    list.append(el);
    return el;
  };
  const given = values.getAll(name);
  for (const v of given.length ? given : [""]) add(v);
  return h("div", { class: "field" }, h("label", { for: `f-${name}` }, label), list,
    h("button", { type: "button", class: "link", "aria-label": `${label}: add another value`, title: "Records matching any of the values are listed", onclick: () => add("").focus() }, "+ or"));
}

/** A time filter's input, in local time; an unchanged value keeps the URL's exact text. */
function timeField(name, label, values) {
  const utc = values.get(name) || "";
  return field(label, h("input", { name, type: "datetime-local", value: fromUtc(utc), "data-utc": utc || null }), "your local time");
}

/** The form's filters as a query: every non-empty control, repeated names kept. */
function formParams(form) {
  const q = new URLSearchParams();
  for (const el of form.elements) {
    let v = el.name && !el.disabled ? el.value.trim() : "";
    if (!v) continue;
    if (el.type === "datetime-local") v = v === fromUtc(el.dataset.utc) ? el.dataset.utc : toUtc(v);
    q.append(el.name, v);
  }
  return q;
}

/**
 * The listing's filters, filled in from the URL. `extra`: the page's own fields in the grid;
 * `beside`: fields beside the buttons; neither counts as a filter.
 */
function filterForm(values, { submitLabel, extra = [], beside = [], content = false, onsubmit }) {
  const fields = [
    timeField("since", "From", values),
    timeField("until", "To", values),
    !session.tenant_id ? field("Tenant", input("tenant_id", { value: values.get("tenant_id") || "" })) : null,
    ...TEXT_FILTERS.map(([name, label]) => multiField(name, label, values)),
    ...TEMPERATURE_FILTERS.map(([name, label]) => field(label, input(name, { inputmode: "decimal", value: values.get(name) || "" }))),
    ...(content ? CONTENT_FILTERS.map(([name, label]) => field(label, input(name, { value: values.get(name) || "" }))) : []),
    field("Success", select("success", [["", "any"], ["true", "succeeded"], ["false", "failed"]], values.get("success") || "")),
    ...extra,
  ];
  const grid = h("div", { class: "grid" }, present(fields));
  const buttons = h("div", { class: "actions" }, beside, h("button", { type: "submit" }, submitLabel), h("button", { type: "button", class: "secondary", onclick: () => onsubmit(new URLSearchParams()) }, "Clear"));
  const held = (name) => grid.querySelectorAll(`[name="${CSS.escape(name)}"]`).length + buttons.querySelectorAll(`[name="${CSS.escape(name)}"]`).length;
  const own = new Set([...extra, ...beside].flatMap((f) => [...f.querySelectorAll("[name]")].map((el) => el.name)));
  // A filter in the URL that no control above holds (a parameter this form does not offer,
  // or a second value of a one-value filter) is kept, and shown, so Apply never drops it.
  const kept = h("ul", { class: "kept" });
  for (const name of new Set(values.keys())) {
    if (name === "cursor") continue;
    for (const v of values.getAll(name).slice(held(name))) {
      const item = h("li", {}, h("input", { type: "hidden", name, value: v }), h("code", {}, `${name}=${v}`), " ",
        h("button", { type: "button", class: "link", "aria-label": `Remove filter ${name}=${v}`, onclick: () => item.remove() }, "remove"));
      kept.append(item);
    }
  }
  const active = [...new Set(values.keys())].filter((k) => k !== "cursor" && !own.has(k)).length;
  const form = h(
    "form",
    { class: "filters", role: "search", onsubmit: (e) => {
      e.preventDefault();
      onsubmit(formParams(form));
    } },
    h("details", { open: active > 0 || null },
      h("summary", {}, active ? `Filters (${active} active)` : "Filters"),
      grid,
      kept.children.length ? h("div", { class: "field" }, h("p", {}, "Also filtered by (kept as they are):"), kept) : null),
    buttons,
  );
  return form;
}

// ---------------------------------------------------------------- sign-in

function signInPage(error) {
  nav.replaceChildren();
  const key = h("input", { name: "api_key", type: "password", autocomplete: "off", required: true, placeholder: "ait_…" });
  const form = h(
    "form",
    { class: "card signin", onsubmit: async (e) => {
      e.preventDefault();
      try {
        session = await api("/v1/session", { method: "POST", body: { api_key: key.value.trim() } });
        go(can.read() ? "#/logs" : "#/new");
      } catch (err) {
        signInPage(err.message);
      }
    } },
    field("API key", key, "Your key is exchanged for a session cookie; the browser does not keep it."),
    error ? notice("error", error) : null,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
  );
  page("Sign in to aitrail", form);
  key.focus();
}

async function signOut() {
  try {
    await api("/v1/session", { method: "DELETE" });
  } finally {
    session = null;
    go("#/signin");
  }
}

function renderNav() {
  const here = location.hash.split("?")[0] || "#/logs";
  const links = [
    can.read() && ["#/logs", "Logs"],
    can.write() && ["#/new", "New log"],
    can.read() && ["#/usage", "Usage"],
    can.read() && ["#/integrity", "Integrity"],
    can.audit() && ["#/export", "Export"],
    can.audit() && ["#/access", "Access log"],
    can.admin() && ["#/settings", "Settings"],
    can.admin() && ["#/keys", "API keys"],
  ].filter(Boolean);
  nav.replaceChildren(
    h("a", { href: "#/logs", class: "brand" }, "aitrail"),
    h("ul", {}, links.map(([href, label]) => h("li", {}, h("a", { href, "aria-current": here === href ? "page" : null }, label)))),
    h("span", { class: "who" }, `${session.role}${session.tenant_id ? ` · ${session.tenant_id}` : " · all tenants"}`),
    h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
  );
}

// ---------------------------------------------------------------- logs

// The API lists records in the order they were logged, newest first (each recorded_at is
// taken as it is logged); an imported record's event time may be older, so both times are
// shown and the header says which one orders the list.
const LOG_COLUMNS = [
  ["Recorded ↓", (r) => fmtTime(r.recorded_at)],
  ["Event time", (r) => fmtTime(r.event_time || r.recorded_at)],
  ["Tenant", (r) => r.tenant_id],
  ["Agent", (r) => r.agent_id],
  ["User", (r) => r.user_id],
  ["Model Provider", (r) => r.model_provider],
  ["Model Name", (r) => r.model_name],
  ["Version", (r) => r.model_version],
  ["Temperature", (r) => r.temperature],
  ["Safety Mode", (r) => r.safety_mode],
  ["Tokens", (r) => (r.tokens_input != null || r.tokens_output != null ? `${r.tokens_input ?? 0} / ${r.tokens_output ?? 0}` : "")],
  ["Cost", (r) => (r.cost_amount ? `${r.cost_amount} ${r.cost_currency || ""}`.trim() : "")],
  ["Success", (r) => (r.success ? "yes" : "no")],
];

async function logsPage() {
  const values = params();
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const table = h("div", { class: "table-wrap" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  page(
    "Logs",
    filterForm(values, { submitLabel: "Apply filters", content: true, onsubmit: (q) => go(`#/logs?${q}`) }),
    status,
    table,
    pager,
  );
  const q = new URLSearchParams(values);
  q.set("limit", "50");
  try {
    const res = await api(`/v1/records?${q}`);
    status.textContent = res.records.length ? `${res.records.length} records${values.get("cursor") ? " (later page)" : ""}, newest logged first` : "No records match these filters.";
    if (res.records.length) {
      table.replaceChildren(
        h("table", { class: "logs" },
          h("thead", {}, h("tr", {}, LOG_COLUMNS.map(([label], i) => h("th", { scope: "col", "aria-sort": i === 0 ? "descending" : null }, label)))),
          h("tbody", {}, res.records.map((r) =>
            h("tr", { "data-id": r.id, class: r.success ? "" : "failed", onclick: (e) => {
              if (e.target.tagName !== "A") go(`#/records/${r.id}`);
            } },
              LOG_COLUMNS.map(([label, cell], i) => h("td", { "data-label": label }, i === 0 ? h("a", { href: `#/records/${r.id}` }, cell(r) || "—") : cell(r) ?? ""))),
          )),
        ),
      );
    }
    pager.replaceChildren(...pageLinks("#/logs", values, res.next_cursor));
  } catch (e) {
    status.replaceWith(notice("error", `Could not load records: ${e.message}`));
  }
  ready();
}

// ---------------------------------------------------------------- one record

const RECORD_GROUPS = [
  ["Who", ["tenant_id", "user_id", "username", "agent_id", "session_id", "channel", "feature_code", "feature_instance_id", "instance_label", "external_id"]],
  ["Model", ["operation_type", "model_provider", "model_name", "model_version", "response_model", "deployment_id", "temperature", "safety_mode", "model_config", "model_info"]],
  ["Usage", ["tokens_input", "tokens_output", "processing_time_ms", "cost_amount", "cost_currency"]],
  ["Outcome", ["success", "error_message", "event_time", "recorded_at", "seq", "id"]],
  ["Privacy", ["content_mode", "secrets_redacted", "neutralization_active", "neutralization_mappings_count", "prompt_hash", "response_hash"]],
];

// Field names as people read them, as the Logs table and the New log form say them.
const FIELD_LABELS = {
  tenant_id: "Tenant", user_id: "User", username: "Username", agent_id: "Agent", session_id: "Session",
  channel: "Channel", feature_code: "Feature", feature_instance_id: "Feature Instance ID",
  instance_label: "Instance Label", external_id: "External ID", operation_type: "Operation",
  model_provider: "Model Provider", model_name: "Model Name", model_version: "Model Version",
  response_model: "Response Model", deployment_id: "Deployment ID", temperature: "Temperature",
  safety_mode: "Safety Mode", model_config: "Model Config", model_info: "Model Info",
  tokens_input: "Tokens In", tokens_output: "Tokens Out", processing_time_ms: "Processing Time (ms)",
  cost_amount: "Cost", cost_currency: "Currency", success: "Success", error_message: "Error Message",
  event_time: "Event Time", recorded_at: "Recorded", seq: "Position in Log (seq)", id: "Record ID",
  content_mode: "Content Mode", secrets_redacted: "Secrets Redacted",
  neutralization_active: "Neutralization Active", neutralization_mappings_count: "Neutralization Mappings",
  prompt_hash: "Prompt Hash", response_hash: "Response Hash",
};

/** A field's label; one not listed above (an extension) in words from its name. */
function fieldLabel(name) {
  return FIELD_LABELS[name] || name.split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" ");
}

function show(v) {
  if (v === null || v === undefined) return null;
  return typeof v === "object" ? h("code", { class: "json" }, JSON.stringify(v, null, 2)) : String(v);
}

async function recordPage(id) {
  page("Record");
  let record;
  try {
    record = await api(`/v1/records/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(notice("error", e.status === 404 ? `No record ${id} that this key may see.` : `Could not load the record: ${e.message}`));
    return;
  }
  document.title = `Record ${record.id} · aitrail`;
  const integrity = h("section", { class: "card integrity", "aria-labelledby": "integrity-h", "data-state": "checking" },
    h("h2", { id: "integrity-h" }, "Integrity"), h("p", { role: "status" }, "Checking in your browser…"));
  const shown = new Set(RECORD_GROUPS.flatMap(([, f]) => f).concat(["prompt", "response", "prompt_variables", "prompt_template", "prompt_template_version"]));
  const rest = Object.keys(record).filter((k) => !shown.has(k));
  const groups = [...RECORD_GROUPS, ["Other", rest]];
  main.append(...present(
    h("p", {}, h("a", { href: "#/logs" }, "← Logs")),
    integrity,
    h("section", { class: "card" }, h("h2", {}, "Content"),
      ["prompt", "response"].map((f) => h("div", { class: "content" }, h("h3", {}, f === "prompt" ? "Prompt" : "Response"),
        record[f] != null ? h("pre", {}, record[f]) : h("p", { class: "muted" }, can.audit() || session.role === "admin" ? `Not kept (content mode ${record.content_mode || "unknown"}, or erased).` : "Not shown to your role."))),
      record.prompt_template ? h("div", { class: "content" }, h("h3", {}, "Prompt template"), h("pre", {}, record.prompt_template)) : null,
      record.prompt_variables ? h("div", { class: "content" }, h("h3", {}, "Prompt variables"), show(record.prompt_variables)) : null),
    ...groups.map(([title, fields]) => {
      const rows = fields.filter((f) => record[f] !== undefined && record[f] !== null);
      if (!rows.length) return null;
      return h("section", { class: "card" }, h("h2", {}, title), h("dl", {}, rows.map((f) => [h("dt", { title: f }, fieldLabel(f)), h("dd", {}, show(record[f]))])));
    }),
  ));
  if (!globalThis.crypto || !crypto.subtle) {
    integrity.dataset.state = "unavailable";
    integrity.replaceChildren(h("h2", { id: "integrity-h" }, "Integrity"), notice("info", "This browser cannot check the proof here: WebCrypto needs HTTPS (or localhost). `aitrail verify " + record.id + "` checks it."));
    return;
  }
  try {
    const [proof, key] = await Promise.all([api(`/v1/records/${record.id}/proof`), api("/v1/log-key", { text: true })]);
    const steps = await checkRecord(record, proof, key);
    const pin = await pinned(key);
    if (pin.changed) steps.push({ step: "Log key pinned in this browser", ok: false, detail: pin.detail });
    // "Cannot check here" only when nothing else failed: a real failure is never hidden.
    if (steps.some((s) => s.unsupported) && steps.every((s) => s.ok || s.unsupported)) {
      integrity.dataset.state = "unavailable";
      integrity.replaceChildren(h("h2", { id: "integrity-h" }, "Integrity"), notice("info", `This browser cannot check Ed25519 signatures; \`aitrail verify ${record.id}\` checks them.`));
      return;
    }
    const ok = steps.every((s) => s.ok);
    integrity.dataset.state = ok ? "verified" : "failed";
    integrity.replaceChildren(
      h("h2", { id: "integrity-h" }, "Integrity"),
      notice(ok ? "ok" : "error", ok ? `Verified in your browser: this record is leaf ${proof.leaf_index} of the signed log of ${proof.tree_size} records.` : "Verification failed: this record does not match its signed log."),
      h("p", { class: "muted" }, pin.detail),
      h("ol", { class: "steps" }, steps.map((s) => h("li", { class: s.ok ? "ok" : "bad" }, h("strong", {}, `${s.ok ? "✓" : "✗"} ${s.step}: `), s.detail))),
    );
  } catch (e) {
    integrity.dataset.state = e.status === 409 || /checkpoint/.test(e.message) ? "pending" : "failed";
    integrity.replaceChildren(h("h2", { id: "integrity-h" }, "Integrity"), notice(integrity.dataset.state === "pending" ? "info" : "error", e.message));
  }
}

/**
 * The log key is fetched from the server being checked, so the browser remembers the
 * first one it saw (trust on first use) and says so loudly if the server ever presents
 * another: compare the fingerprint with the one your auditor published.
 */
async function pinned(keyText) {
  let key;
  try {
    key = await parseVerifierKey(keyText);
  } catch {
    return { changed: false, detail: "" };
  }
  const stored = localStorage.getItem("aitrail.logKeyFingerprint");
  if (!stored) {
    localStorage.setItem("aitrail.logKeyFingerprint", key.fingerprint);
    return { changed: false, detail: `Log key ${key.fingerprint.slice(0, 16)}… pinned in this browser now; check it against the fingerprint your organisation publishes.` };
  }
  if (stored !== key.fingerprint) {
    return { changed: true, detail: `The server's log key (${key.fingerprint.slice(0, 16)}…) is not the one this browser pinned (${stored.slice(0, 16)}…): the log may have been replaced.` };
  }
  return { changed: false, detail: `Log key ${key.fingerprint.slice(0, 16)}… is the one this browser pinned.` };
}

// ---------------------------------------------------------------- new log (the conversation-audit-log service's form)

function newLogPage(result) {
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const record = {};
    for (const [k, val] of Object.entries(v)) record[k] = val;
    if (!session.tenant_id && !record.tenant_id) return newLogPage(notice("error", "tenant_id: name the tenant this log belongs to"));
    if (session.tenant_id) record.tenant_id = session.tenant_id;
    if (record.model_config) {
      try {
        record.model_config = JSON.parse(record.model_config);
      } catch {
        return newLogPage(notice("error", "Model Config: not valid JSON"));
      }
    }
    try {
      const res = await api("/v1/records", { method: "POST", body: record });
      const receipt = res.results ? res.results[0] : res;
      newLogPage(h("p", { class: "notice ok", role: "status" }, "Logged: ", h("a", { href: `#/records/${receipt.id}` }, `record ${receipt.id}`), ` (seq ${receipt.seq}).`));
    } catch (err) {
      newLogPage(notice("error", `Not logged: ${err.message}`));
    }
  } },
    !session.tenant_id ? field("Tenant ID", input("tenant_id", { required: true })) : null,
    h("div", { class: "grid" },
      field("Agent ID", input("agent_id")),
      field("Session ID", input("session_id")),
      field("Channel", input("channel", { placeholder: "api, web, slack…" })),
      field("User ID", input("user_id")),
    ),
    field("Prompt", h("textarea", { name: "prompt", rows: 4 })),
    field("Response", h("textarea", { name: "response", rows: 4 })),
    h("fieldset", {}, h("legend", {}, "Model Metadata (Optional)"),
      h("div", { class: "grid" },
        field("Model Provider", input("model_provider", { placeholder: "openai, anthropic, azure…" })),
        field("Model Name", input("model_name", { placeholder: "gpt-4o" })),
        field("Model Version", input("model_version")),
        field("Deployment ID", input("deployment_id")),
        field("Temperature", input("temperature", { inputmode: "decimal", placeholder: "0.7" })),
        field("Safety Mode", select("safety_mode", [["", "—"], ["strict", "strict"], ["balanced", "balanced"], ["relaxed", "relaxed"]], "")),
      ),
      field("Model Config (JSON)", h("textarea", { name: "model_config", rows: 2, placeholder: '{"top_p": 0.9}' })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create log")),
  );
  page("New log", result || null, form);
}

// ---------------------------------------------------------------- usage

const METRICS = [
  ["records", "Records", (t) => t.records],
  ["tokens", "Tokens", (t) => t.tokens_input + t.tokens_output],
  ["cost", "Cost", (t, cur) => t.cost[cur] || 0],
];

async function usagePage() {
  const values = params();
  const metric = values.get("metric") || "records";
  const by = values.get("by") || "provider";
  const status = h("p", { class: "muted", role: "status" }, "Summing usage…");
  const out = h("div", {});
  const extra = [
    field("Measure", select("metric", METRICS.map(([k, l]) => [k, l]), metric)),
    field("Split by", select("by", [["provider", "provider"], ["model", "model"]], by)),
    field("Period", select("bucket", [["", "automatic"], ["hour", "hour"], ["day", "day"]], values.get("bucket") || "")),
  ];
  const form = filterForm(values, { submitLabel: "Show", extra, onsubmit: (q) => go(`#/usage?${q}`) });
  const period = h("p", { id: "usage-period" });
  page("Usage", form, period, status, out);
  const q = new URLSearchParams(values);
  q.delete("metric");
  q.delete("by");
  let report;
  try {
    report = await api(`/v1/usage?${q}`);
  } catch (e) {
    status.replaceWith(notice("error", `Could not load usage: ${e.message}`));
    return ready();
  }
  // Without From the API sums the last 30 days only (the Logs page lists every record), so
  // the window is said, as the server answered it.
  const window = `${fmtTime(report.since)} to ${report.until ? fmtTime(report.until) : "now"} (UTC, by event time)`;
  period.replaceChildren(
    h("strong", {}, "Period: "), values.get("since") ? window : `the last 30 days, ${window}; set From to see earlier records.`, " ",
    h("button", { type: "button", class: "link", onclick: () => {
      form.querySelector("details").open = true;
      form.querySelector('[name="since"]').focus();
    } }, "Change period"),
  );
  if (!report.totals.records) {
    status.textContent = values.get("since") ? "No records in this period." : "No records in the last 30 days.";
    return ready();
  }
  const currencies = Object.keys(report.totals.cost);
  const currency = currencies[0] || "";
  const [, label, value] = METRICS.find(([k]) => k === metric) || METRICS[0];
  const unit = metric === "cost" ? ` (${currency || "no currency"})` : "";
  status.textContent = `${report.totals.records} records, ${compact(report.totals.tokens_input + report.totals.tokens_output)} tokens, ${fmtCost(report.totals.cost) || "no cost"}; per ${report.bucket}.`;
  const buckets = [...new Set(report.over_time.map((p) => p.at))].sort();
  const names = by === "model" ? report.by_model.map((g) => g.key) : report.by_provider.map((g) => g.key);
  const series = names.map((name) => ({ name, values: new Map() }));
  for (const p of report.over_time) {
    const name = by === "model" ? `${p.provider}/${p.model}` : p.provider;
    const s = series.find((x) => x.name === name);
    s.values.set(p.at, (s.values.get(p.at) || 0) + value(p, currency));
  }
  const legend = h("ul", { class: "legend" }, series.map((s, i) => h("li", {}, h("span", { class: "swatch", "data-colour": i, "aria-hidden": "true" }), s.name)));
  const groups = (list) => list.map((g) => ({ name: g.key, value: value(g, currency) }));
  const table = (title, list) => h("div", { class: "table-wrap" }, h("table", { class: "summary" },
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, ["", "Records", "Failed", "Tokens in", "Tokens out", "Cost"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, list.map((g) => h("tr", {}, h("th", { scope: "row" }, g.key), h("td", {}, g.records), h("td", {}, g.failures), h("td", {}, g.tokens_input), h("td", {}, g.tokens_output), h("td", {}, fmtCost(g.cost)))))));
  out.replaceChildren(
    h("section", { class: "card" }, h("h2", {}, `${label}${unit} over time, by ${by}`), stackedBars({ title: `${label} per ${report.bucket} by ${by}`, buckets, series }), legend),
    h("section", { class: "card" }, h("h2", {}, `Provider comparison: ${label.toLowerCase()}${unit}`), barList({ title: `${label} by provider`, groups: groups(report.by_provider) }), table("By provider", report.by_provider)),
    h("section", { class: "card" }, h("h2", {}, "By model"), table("By model", report.by_model)),
    h("div", { class: "two" },
      h("section", { class: "card" }, h("h2", {}, "Top users"), barList({ title: `Top users by ${label.toLowerCase()}`, groups: groups(report.top_users), width: 480 })),
      h("section", { class: "card" }, h("h2", {}, "Top features"), barList({ title: `Top features by ${label.toLowerCase()}`, groups: groups(report.top_features), width: 480 })),
    ),
  );
  legend.querySelectorAll(".swatch").forEach((sw) => {
    sw.style.background = colour(Number(sw.dataset.colour));
  });
  ready();
}

// ---------------------------------------------------------------- integrity

async function integrityPage() {
  const values = params();
  const tenant = session.tenant_id || values.get("tenant_id") || "";
  const tenantForm = !session.tenant_id
    ? h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      go(`#/integrity?${new URLSearchParams(formValues(e.target))}`);
    } }, field("Tenant", input("tenant_id", { value: tenant, required: true })), h("button", { type: "submit" }, "Show"))
    : null;
  const log = h("section", { class: "card" }, h("h2", {}, "Log"), h("p", { role: "status" }, tenant ? "Loading…" : "Name a tenant to see its log."));
  const last = h("section", { class: "card", id: "verification" }, h("h2", {}, "Full verification"), h("p", { role: "status" }, "Loading…"));
  page("Integrity", tenantForm, log, last);
  try {
    const keyText = await api("/v1/log-key", { text: true });
    const webcrypto = Boolean(globalThis.crypto && crypto.subtle);
    let key = null;
    let keyProblem = webcrypto ? "" : "(needs WebCrypto: HTTPS or localhost)";
    if (webcrypto) {
      try {
        key = await parseVerifierKey(keyText);
      } catch (e) {
        keyProblem = `INVALID: ${e.message}`;
      }
    }
    const pin = key ? await pinned(keyText) : { detail: "" };
    const rows = [["Log key", keyText.trim()], ["Key fingerprint (SHA-256)", key ? `${key.fingerprint}${pin.detail ? ` — ${pin.detail}` : ""}` : keyProblem]];
    if (tenant) {
      try {
        const note = await api(`/v1/checkpoint?tenant_id=${encodeURIComponent(tenant)}`, { text: true });
        const cp = parseCheckpoint(note);
        const signature = key
          ? await verifyNote(note, key).then(
            () => (cp.origin === `${key.name}/${tenant}` ? "valid: signed by the log key (checked in your browser)" : `INVALID: the checkpoint is of log ${cp.origin}`),
            (e) => (e.name === "NotSupportedError" ? "not checked: this browser has no Ed25519" : `INVALID: ${e.message}`),
          )
          : `not checked here ${keyProblem}`;
        rows.push(["Log size", `${cp.size} records`], ["Origin", cp.origin], ["Latest checkpoint", h("pre", { class: "note" }, note)], ["Signature", h("span", { id: "checkpoint-signature" }, signature)]);
      } catch (e) {
        rows.push(["Latest checkpoint", e.message]);
      }
    }
    log.replaceChildren(h("h2", {}, "Log"), h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  } catch (e) {
    log.replaceChildren(h("h2", {}, "Log"), notice("error", e.message));
  }
  const showRun = (run) => {
    const children = [h("h2", {}, "Full verification")];
    if (run) {
      children.push(
        notice(run.ok ? "ok" : "error", run.ok ? `Verified: ${run.records} records, no problem found.` : `${run.findings} problems found.`),
        h("dl", {}, [["Started", fmtTime(run.started_at)], ["Finished", fmtTime(run.finished_at)], ["Kept as system event", run.event_id || ""]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        run.examples.length ? h("ul", { class: "findings" }, run.examples.map((f) => h("li", {}, h("code", {}, f)))) : null,
      );
    } else {
      children.push(h("p", {}, "No full verification has run yet."));
    }
    if (can.audit()) {
      const button = h("button", { type: "button", onclick: async () => {
        button.disabled = true;
        button.textContent = "Verifying the whole store…";
        try {
          showRun(await api("/v1/verification", { method: "POST" }));
        } catch (e) {
          last.append(notice("error", e.message));
          button.disabled = false;
          button.textContent = "Verify now";
        }
      } }, "Verify now");
      children.push(h("div", { class: "actions" }, button));
    }
    last.replaceChildren(...present(children));
    last.dataset.state = run ? (run.ok ? "verified" : "failed") : "none";
  };
  try {
    showRun(await api("/v1/verification"));
  } catch (e) {
    if (e.status === 404) showRun(null);
    else last.replaceChildren(h("h2", {}, "Full verification"), notice("error", e.message));
  }
}

// ---------------------------------------------------------------- export

function exportPage() {
  const values = params();
  const link = h("p", {});
  // The format is not a filter: it stands beside the button, as wide as its longest option.
  const format = field("Format", select("format", [["zip", "zip bundle (verifiable offline)"], ["csv", "CSV"], ["json", "JSON (audit records)"], ["jsonl", "JSON Lines"]], values.get("format") || "zip"));
  format.classList.add("fit");
  const form = filterForm(values, { submitLabel: "Prepare export", beside: [format], onsubmit: (q) => {
    if (!q.get("format")) q.set("format", "zip");
    if (!session.tenant_id && !q.get("tenant_id")) {
      link.replaceChildren(notice("error", "tenant_id: name the tenant to export"));
      return;
    }
    link.replaceChildren(h("a", { href: `/v1/export?${q}`, class: "button", download: "" }, `Download ${q.get("format")} export`), h("small", {}, " Every export is recorded in the access log. Check a zip offline with aitrail verify --export FILE."));
  } });
  form.querySelector("details").open = true;
  page("Export", form, link);
}

// ---------------------------------------------------------------- settings (policy)

const POLICY_FIELDS = [
  ["content_mode", "Content kept", [["none", "none"], ["hash", "keyed hash only"], ["preview", "preview"], ["full", "full"]]],
  ["preview_chars", "Preview length (characters)"],
  ["retention_days", "Retention (days)"],
  ["content_retention_days", "Content retention (days)"],
  ["secrets", "Secrets found in content", [["redact", "redact"], ["reject", "reject the record"]]],
  ["fail_mode", "When a record cannot be written", [["closed", "closed: refuse calls"], ["strict", "strict: refuse calls, hold answers until recorded"], ["open", "open: let them through"]]],
];

async function settingsPage() {
  const tenant = session.tenant_id || params().get("tenant_id") || "";
  if (!tenant) {
    page("Settings", h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      go(`#/settings?${new URLSearchParams(formValues(e.target))}`);
    } }, field("Tenant", input("tenant_id", { required: true })), h("button", { type: "submit" }, "Edit policy")));
    return;
  }
  page(`Settings · ${tenant}`, h("p", { role: "status" }, "Loading…"));
  let policy;
  try {
    policy = await api(`/v1/tenants/${encodeURIComponent(tenant)}/policy`);
  } catch (e) {
    page(`Settings · ${tenant}`, notice("error", e.message));
    return;
  }
  const render = (message) => {
    const form = h("form", { class: "card", onsubmit: async (e) => {
      e.preventDefault();
      const v = formValues(form);
      const body = {};
      for (const [k] of POLICY_FIELDS) if (v[k] !== undefined) body[k] = /^\d+$/.test(v[k]) ? Number(v[k]) : v[k];
      body.retention_override = v.retention_override === "on";
      try {
        policy = await api(`/v1/tenants/${encodeURIComponent(tenant)}/policy`, { method: "PUT", body });
        render(notice("ok", "Policy saved."));
      } catch (err) {
        render(notice("error", `Not saved: ${err.message}`));
      }
    } },
      h("div", { class: "grid" }, POLICY_FIELDS.map(([k, label, options]) =>
        field(label, options ? select(k, options, String(policy[k])) : input(k, { inputmode: "numeric", value: policy[k] ?? "" })))),
      h("div", { class: "field check" }, h("input", { type: "checkbox", id: "f-override", name: "retention_override", checked: policy.retention_override || null }), h("label", { for: "f-override" }, "Allow retention under 180 days (override)")),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Save policy")),
    );
    page(`Settings · ${tenant}`, message || null, h("p", {}, "What this tenant's records keep and for how long (docs/PRIVACY.md). Every change is in the access log."), form);
  };
  render();
}

// ---------------------------------------------------------------- API keys

async function keysPage(message) {
  page("API keys", message || null, h("p", { role: "status" }, "Loading…"));
  let keys;
  try {
    keys = await api("/v1/keys");
  } catch (e) {
    page("API keys", notice("error", e.message));
    return;
  }
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    const v = formValues(form);
    if (v.expires_at) v.expires_at = toUtc(v.expires_at);
    try {
      const made = await api("/v1/keys", { method: "POST", body: v });
      keysPage(h("div", { class: "notice ok", role: "status" }, h("p", {}, `Key ${made.id} made. Copy it now: it is shown only once.`), h("pre", { class: "secret" }, made.key)));
    } catch (err) {
      keysPage(notice("error", `Not made: ${err.message}`));
    }
  } },
    h("h2", {}, "New key"),
    h("div", { class: "grid" },
      field("Role", select("role", [["viewer", "viewer"], ["auditor", "auditor"], ["ingest", "ingest"], ["admin", "admin"]], "viewer")),
      session.tenant_id ? null : field("Tenant (empty: every tenant)", input("tenant_id")),
      field("Label", input("label")),
      field("Expires", h("input", { type: "datetime-local", name: "expires_at" })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Make key")),
  );
  const rows = keys.map((k) => h("tr", {},
    h("td", { "data-label": "Id" }, h("code", {}, k.id)), h("td", { "data-label": "Role" }, k.role), h("td", { "data-label": "Tenant" }, k.tenant_id || "all"),
    h("td", { "data-label": "Label" }, k.label || ""), h("td", { "data-label": "Created" }, fmtTime(k.created_at)), h("td", { "data-label": "Expires" }, fmtTime(k.expires_at) || "never"),
    h("td", { "data-label": "State" }, k.revoked_at ? `revoked ${fmtTime(k.revoked_at)}` : h("button", { type: "button", class: "secondary", onclick: async () => {
      if (!confirm(`Revoke key ${k.id}? Its sessions end too.`)) return;
      try {
        await api(`/v1/keys/${k.id}/revoke`, { method: "POST" });
        keysPage(notice("ok", "Key revoked."));
      } catch (err) {
        keysPage(notice("error", err.message));
      }
    } }, "Revoke"))));
  page("API keys", message || null, form,
    h("div", { class: "table-wrap" }, h("table", { class: "logs" }, h("thead", {}, h("tr", {}, ["Id", "Role", "Tenant", "Label", "Created", "Expires", "State"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))));
}

// ---------------------------------------------------------------- access log

async function accessPage() {
  const values = params();
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const v = formValues(form);
    if (v.since) v.since = toUtc(v.since);
    if (v.until) v.until = toUtc(v.until);
    go(`#/access?${new URLSearchParams(v)}`);
  } },
    h("div", { class: "grid" },
      field("Key id", input("key_id", { value: values.get("key_id") || "" })),
      field("Operation", input("operation", { value: values.get("operation") || "", placeholder: "read, export, sign-in…" })),
      session.tenant_id ? null : field("Tenant", input("tenant_id", { value: values.get("tenant_id") || "" })),
      field("From", h("input", { type: "datetime-local", name: "since", value: fromUtc(values.get("since")) })),
      field("To", h("input", { type: "datetime-local", name: "until", value: fromUtc(values.get("until")) })),
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply filters")));
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const out = h("div", { class: "table-wrap" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  page("Access log", form, status, out, pager);
  const q = new URLSearchParams(values);
  q.set("limit", "50");
  try {
    const res = await api(`/v1/access-log?${q}`);
    status.textContent = res.records.length ? `${res.records.length} accesses, newest first` : "No accesses match.";
    out.replaceChildren(h("table", { class: "logs" },
      h("thead", {}, h("tr", {}, ["Time", "Key", "Role", "Operation", "Route", "Tenant", "Records", "Status", "Query"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, res.records.map((r) => {
        const a = r.attributes || {};
        const labels = res.key_labels || {};
        return h("tr", {},
          h("td", { "data-label": "Time" }, fmtTime(r.recorded_at)), h("td", { "data-label": "Key" }, h("span", {}, h("code", {}, r.user_id), labels[r.user_id] ? h("span", { class: "key-label" }, ` ${labels[r.user_id]}`) : null)), h("td", { "data-label": "Role" }, r.agent_id),
          h("td", { "data-label": "Operation" }, r.operation_type), h("td", { "data-label": "Route" }, r.feature_code), h("td", { "data-label": "Tenant" }, r.session_id),
          h("td", { "data-label": "Records" }, a.records ?? ""), h("td", { "data-label": "Status" }, a.status ?? ""),
          h("td", { "data-label": "Query" }, Object.entries(a.query || {}).map(([k, v]) => `${k}=${[].concat(v).join(",")}`).join(" ")));
      }))));
    pager.replaceChildren(...pageLinks("#/access", values, res.next_cursor));
  } catch (e) {
    status.replaceWith(notice("error", e.message));
  }
}

// ---------------------------------------------------------------- routing

const ROUTES = [
  [/^#\/logs$/, can.read, logsPage],
  [/^#\/records\/([^/]+)$/, can.read, recordPage],
  [/^#\/new$/, can.write, () => newLogPage()],
  [/^#\/usage$/, can.read, usagePage],
  [/^#\/integrity$/, can.read, integrityPage],
  [/^#\/export$/, can.audit, exportPage],
  [/^#\/access$/, can.audit, accessPage],
  [/^#\/settings$/, can.admin, settingsPage],
  [/^#\/keys$/, can.admin, () => keysPage()],
];

async function route() {
  const path = location.hash.split("?")[0];
  if (!session) {
    try {
      session = await api("/v1/session");
    } catch {
      session = null;
    }
  }
  if (!session) return signInPage();
  if (path === "" || path === "#/" || path === "#/signin") return go(can.read() ? "#/logs" : "#/new");
  renderNav();
  for (const [pattern, allowed, render] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    if (!allowed()) return page("Not available", notice("error", `A ${session.role} key cannot use this page.`));
    return render(...m.slice(1).map(decodeURIComponent));
  }
  page("Not found", notice("error", `No page ${path}.`), h("p", {}, h("a", { href: "#/logs" }, "Go to the logs")));
}

window.addEventListener("hashchange", route);
route();
