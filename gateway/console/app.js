// The Strata operator console: a hash-routed page that talks to the S3 API and the admin API of
// the server it was loaded from, signing every request with the key the operator signed in with.
// Data from the server (bucket names, keys, records) is only ever put into the page as text.

import { Client, S3Error, kids, text } from "./api.js";

const $ = (sel) => document.querySelector(sel);

let client = null;
let isAdmin = false;
let usageVerb = true; // turned off the first time the server says it has no `usage` verb

// ---- small DOM helpers ------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", null, h("tr", null, headers.map((x) => h("th", null, x)))),
    h("tbody", null, rows));
}

function bytes(n) {
  if (n == null || n === "") return "";
  n = Number(n);
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}

function when(ms) {
  if (ms == null || ms === "") return "";
  const d = typeof ms === "number" ? new Date(ms) : new Date(ms);
  return isNaN(d) ? String(ms) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

// Any JSON value as nested tables: objects as key/value lists, arrays of objects as tables.
function jsonView(v) {
  if (v == null) return h("span", { class: "note" }, "—");
  if (Array.isArray(v)) {
    if (!v.length) return h("span", { class: "note" }, "none");
    if (v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const cols = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return table(cols, v.map((x) => h("tr", null, cols.map((c) => h("td", null, scalarOrView(x[c]))))));
    }
    return h("span", null, v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", "));
  }
  if (typeof v === "object") {
    return h("dl", { class: "kv" }, Object.entries(v).flatMap(([k, x]) => [h("dt", null, k), h("dd", null, scalarOrView(x))]));
  }
  return String(v);
}
const scalarOrView = (x) => (x && typeof x === "object" ? jsonView(x) : x == null ? "" : String(x));

function showError(e) {
  const box = $("#error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = e instanceof S3Error
    ? `${e.code}: ${e.detail}` + (e.requestId ? `  (request ${e.requestId})` : "")
    : String(e.message || e);
}

// Runs `f`, showing its failure in the error box; returns its value or undefined.
async function guard(f) {
  try { return await f(); } catch (e) { showError(e); console.error(e); return undefined; }
}

// A button that asks once more before it acts.
function confirmButton(label, act, cls = "danger") {
  const b = h("button", { class: "secondary", type: "button" }, label);
  let armed = false;
  b.addEventListener("click", async () => {
    if (!armed) { armed = true; b.textContent = "Confirm " + label.toLowerCase(); b.className = cls; return; }
    b.disabled = true;
    await guard(act);
    b.disabled = false;
  });
  return b;
}

// ---- routing ----------------------------------------------------------------------------------
function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/buckets";
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, q: new URLSearchParams(qs || "") };
}

const link = (parts, q) => "#/" + parts.map(encodeURIComponent).join("/") + (q && [...new URLSearchParams(q)].length ? "?" + new URLSearchParams(q) : "");

async function route() {
  showError(null);
  const view = $("#view");
  if (!client) return signInPage(view);
  const { parts, q } = parseHash();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === "#/" + (parts[0] === "b" ? "buckets" : parts[0]));
  }
  view.replaceChildren(h("p", { class: "note" }, "Loading…"));
  const page = {
    buckets: bucketsPage, b: bucketPage, destruction: destructionPage, cluster: clusterPage,
    migrations: migrationsPage, users: usersPage,
  }[parts[0]] || bucketsPage;
  const content = await guard(() => page(parts, q));
  view.replaceChildren(...(content ? [content].flat().filter((x) => x != null) : [h("p", { class: "note" }, "This page could not be loaded.")]));
}

// ---- sign in ----------------------------------------------------------------------------------
function signInPage(view) {
  document.body.dataset.page = "signin";
  const ak = h("input", { type: "text", id: "access-key", autocomplete: "username", required: true, spellcheck: "false" });
  const sk = h("input", { type: "password", id: "secret-key", autocomplete: "off", required: true });
  const region = h("input", { type: "text", id: "region", value: "us-east-1" });
  const msg = h("p", { id: "signin-error", class: "bad", role: "alert" });
  const form = h("form", { id: "signin" },
    h("label", null, "Access key", ak),
    h("label", null, "Secret key", sk),
    h("label", null, "Region", region),
    h("button", { type: "submit", id: "signin-submit" }, "Sign in"),
    msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    const creds = { accessKey: ak.value.trim(), secretKey: sk.value, region: region.value.trim() || "us-east-1" };
    try {
      await signIn(creds);
      location.hash = "#/buckets";
      await route();
    } catch (e) {
      msg.textContent = e instanceof S3Error ? `${e.code}: ${e.detail}` : String(e.message || e);
    }
  });
  view.replaceChildren(h("div", { class: "signin" },
    h("h1", null, "Sign in to Strata"),
    h("p", { class: "note" }, "Your key stays in this tab: it signs requests here and is never sent."),
    form));
}

async function signIn(creds) {
  const c = new Client(creds);
  await c.request("GET", "", null); // ListBuckets: proves the key and secret
  let admin = false;
  try { await c.admin("worker-list"); admin = true; } catch (e) {
    if (!(e instanceof S3Error && e.code === "AccessDenied")) throw e;
  }
  client = c;
  isAdmin = admin;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#refresh").hidden = false;
  $("#who").textContent = creds.accessKey + (admin ? " (admin)" : "");
  for (const a of document.querySelectorAll("#nav a.admin")) a.hidden = !admin;
  document.body.dataset.page = "";
}

function signOut() {
  client = null;
  isAdmin = false;
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#refresh").hidden = true;
  $("#who").textContent = "";
  location.hash = "";
  route();
}

// ---- buckets ----------------------------------------------------------------------------------
async function usageOf(bucket) {
  if (!isAdmin || !usageVerb) return "—";
  try {
    const u = await client.admin("usage", { bucket });
    // The `usage` verb's report: {buckets: [{bucket, objects, bytes: {CLASS: n}, ...}]}.
    const t = (u.buckets ?? []).find((b) => b.bucket === bucket);
    if (!t) return "—";
    const stored = Object.values(t.bytes ?? {}).reduce((a, n) => a + n, 0);
    return `${bytes(stored)}, ${t.objects} objects`;
  } catch (e) {
    if (e instanceof S3Error && /unknown admin verb/.test(e.detail)) usageVerb = false;
    return "—";
  }
}

async function bucketsPage() {
  const doc = await client.xml("GET", "", null);
  const buckets = kids(doc.documentElement, "Buckets").flatMap((b) => kids(b, "Bucket"))
    .map((b) => ({ name: text(b, "Name"), created: text(b, "CreationDate") }));
  const name = h("input", { type: "text", id: "new-bucket", placeholder: "new-bucket-name", required: true });
  const lock = h("input", { type: "checkbox", id: "new-bucket-lock" });
  const form = h("form", { id: "create-bucket" }, name, h("label", null, lock, " Object Lock"),
    h("button", { type: "submit" }, "Create bucket"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const headers = lock.checked ? { "x-amz-bucket-object-lock-enabled": "true" } : {};
    const ok = await guard(() => client.request("PUT", name.value.trim(), null, { headers }));
    if (ok) route();
  });
  const usageCells = new Map();
  const rows = buckets.map((b) => {
    const cell = h("td", { class: "num" }, "…");
    usageCells.set(b.name, cell);
    return h("tr", { "data-bucket": b.name },
      h("td", null, h("a", { href: link(["b", b.name]) }, b.name)),
      h("td", null, when(b.created)),
      cell,
      h("td", null,
        h("a", { href: link(["b", b.name, "lifecycle"]) }, "lifecycle"), " · ",
        h("a", { href: link(["b", b.name, "lock"]) }, "object lock"), " ",
        confirmButton("Delete", async () => { await client.request("DELETE", b.name, null); route(); })));
  });
  // Usage last and one bucket at a time: the table is usable before it is filled in.
  (async () => { for (const [b, cell] of usageCells) cell.textContent = await usageOf(b); })();
  return [h("h1", null, "Buckets"), form,
    buckets.length ? table(["Bucket", "Created", "Usage", ""], rows, { id: "buckets" }) : h("p", { class: "note", id: "buckets" }, "No buckets yet.")];
}

// ---- one bucket: objects, versions, lifecycle, object lock ------------------------------------
function bucketTabs(bucket, active) {
  const tab = (id, label, parts) => h("a", { href: link(parts), class: active === id ? "active" : null, id: "tab-" + id }, label);
  return h("div", { class: "tabs" },
    tab("objects", "Objects", ["b", bucket]),
    tab("versions", "Versions", ["b", bucket, "versions"]),
    tab("lifecycle", "Lifecycle", ["b", bucket, "lifecycle"]),
    tab("lock", "Object Lock", ["b", bucket, "lock"]));
}

async function bucketPage(parts, q) {
  const [, bucket, sub] = parts;
  const body = await ({ versions: versionsView, lifecycle: lifecycleView, lock: lockView }[sub] || objectsView)(bucket, q);
  return [h("h1", null, h("a", { href: "#/buckets" }, "Buckets"), " / ", bucket), bucketTabs(bucket, sub || "objects"), body].flat();
}

function prefixCrumbs(bucket, prefix, sub) {
  const segs = prefix.split("/").filter(Boolean);
  const out = [h("a", { href: link(["b", bucket].concat(sub ? [sub] : [])) }, "/")];
  let acc = "";
  for (const s of segs) {
    acc += s + "/";
    out.push(" ", h("a", { href: link(["b", bucket].concat(sub ? [sub] : []), { prefix: acc }) }, s + "/"));
  }
  return h("p", { class: "mono", id: "prefix" }, out);
}

function uploadForm(bucket, prefix) {
  const file = h("input", { type: "file", id: "upload-file", multiple: true });
  const status = h("span", { id: "upload-status", class: "note" });
  const form = h("form", { id: "upload" }, h("span", null, "Upload to ", h("code", null, prefix || "/")), file,
    h("button", { type: "submit", id: "upload-submit" }, "Upload"), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const f of file.files) {
      status.textContent = `uploading ${f.name}…`;
      const headers = { "content-type": f.type || "application/octet-stream" };
      const ok = await guard(() => client.request("PUT", bucket, prefix + f.name, { headers, body: f }));
      if (!ok) { status.textContent = `${f.name}: failed`; return; }
      status.textContent = `uploaded ${f.name} (${bytes(f.size)})`;
    }
    route();
  });
  return form;
}

async function downloadLink(bucket, key, versionId, label = "Download") {
  return h("a", { href: await client.downloadUrl(bucket, key, versionId), class: "download", download: "" }, label);
}

async function objectsView(bucket, q) {
  const prefix = q.get("prefix") || "";
  const token = q.get("token");
  const query = [["list-type", "2"], ["delimiter", "/"], ["prefix", prefix], ["max-keys", q.get("max") || "100"]];
  if (token) query.push(["continuation-token", token]);
  const doc = await client.xml("GET", bucket, null, { query });
  const root = doc.documentElement;
  const dirs = kids(root, "CommonPrefixes").map((p) => text(p, "Prefix"));
  const objects = kids(root, "Contents").map((c) => ({
    key: text(c, "Key"), size: text(c, "Size"), modified: text(c, "LastModified"),
    etag: text(c, "ETag"), cls: text(c, "StorageClass"),
  }));
  const rows = [
    ...dirs.map((d) => h("tr", { class: "prefix" },
      h("td", null, h("a", { href: link(["b", bucket], { prefix: d }) }, d.slice(prefix.length))),
      h("td", null), h("td", null), h("td", null), h("td", null))),
    ...(await Promise.all(objects.map(async (o) => h("tr", { "data-key": o.key },
      h("td", { class: "mono" }, o.key.slice(prefix.length)),
      h("td", { class: "num" }, bytes(o.size)),
      h("td", null, when(o.modified)),
      h("td", null, o.cls),
      h("td", null, await downloadLink(bucket, o.key), " ",
        confirmButton("Delete", async () => { await client.request("DELETE", bucket, o.key); route(); })))))),
  ];
  const next = text(root, "NextContinuationToken");
  const pager = h("div", { class: "bar" },
    token ? h("a", { href: link(["b", bucket], { prefix }) }, "« first page") : null,
    text(root, "IsTruncated") === "true" && next ? h("a", { href: link(["b", bucket], { prefix, token: next }), id: "next-page" }, "next page »") : null);
  return [prefixCrumbs(bucket, prefix), uploadForm(bucket, prefix),
    rows.length ? table(["Name", "Size", "Last modified", "Class", ""], rows, { id: "objects" }) : h("p", { class: "note", id: "objects" }, "No objects here."),
    pager];
}

async function versionsView(bucket, q) {
  const prefix = q.get("prefix") || "";
  const query = [["versions", ""], ["prefix", prefix], ["max-keys", "100"]];
  if (q.get("key")) query.push(["key-marker", q.get("key")]);
  if (q.get("vid")) query.push(["version-id-marker", q.get("vid")]);
  const [doc, ver] = await Promise.all([
    client.xml("GET", bucket, null, { query }),
    client.xml("GET", bucket, null, { query: [["versioning", ""]] }),
  ]);
  const status = text(ver.documentElement, "Status") || "Unversioned";
  const toggle = h("button", { class: "secondary", type: "button", id: "versioning-toggle" }, status === "Enabled" ? "Suspend versioning" : "Enable versioning");
  toggle.addEventListener("click", async () => {
    const want = status === "Enabled" ? "Suspended" : "Enabled";
    const xml = `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>${want}</Status></VersioningConfiguration>`;
    if (await guard(() => client.request("PUT", bucket, null, { query: [["versioning", ""]], body: xml, headers: { "content-type": "application/xml" } }))) route();
  });
  const root = doc.documentElement;
  const entries = Array.from(root.children).filter((c) => c.localName === "Version" || c.localName === "DeleteMarker");
  const rows = await Promise.all(entries.map(async (v) => {
    const key = text(v, "Key"), vid = text(v, "VersionId"), marker = v.localName === "DeleteMarker";
    return h("tr", null,
      h("td", { class: "mono" }, key), h("td", { class: "mono" }, vid),
      h("td", null, text(v, "IsLatest") === "true" ? "latest" : ""),
      h("td", null, marker ? "delete marker" : bytes(text(v, "Size"))),
      h("td", null, when(text(v, "LastModified"))),
      h("td", null, marker ? null : await downloadLink(bucket, key, vid), " ",
        confirmButton("Delete version", async () => { await client.request("DELETE", bucket, key, { query: [["versionId", vid]] }); route(); })));
  }));
  const more = text(root, "IsTruncated") === "true";
  return [h("p", null, "Versioning: ", h("strong", { id: "versioning-status" }, status), " ", toggle),
    prefixCrumbs(bucket, prefix, "versions"),
    rows.length ? table(["Key", "Version", "", "Size", "Last modified", ""], rows, { id: "versions" }) : h("p", { class: "note", id: "versions" }, "No versions."),
    more ? h("a", { href: link(["b", bucket, "versions"], { prefix, key: text(root, "NextKeyMarker"), vid: text(root, "NextVersionIdMarker") }) }, "next page »") : null];
}

function ruleRow(r) {
  const filter = kids(r, "Filter")[0];
  const and = filter && kids(filter, "And")[0];
  const prefix = text(r, "Prefix") || (filter && (text(filter, "Prefix") || (and && text(and, "Prefix")))) || "";
  const tags = (filter ? [...kids(filter, "Tag"), ...(and ? kids(and, "Tag") : [])] : []).map((t) => `${text(t, "Key")}=${text(t, "Value")}`);
  const actions = [];
  for (const e of kids(r, "Expiration")) {
    if (text(e, "Days")) actions.push(`expire current after ${text(e, "Days")} days`);
    if (text(e, "Date")) actions.push(`expire current on ${text(e, "Date")}`);
    if (text(e, "ExpiredObjectDeleteMarker") === "true") actions.push("remove expired delete markers");
  }
  for (const t of kids(r, "Transition")) actions.push(`to ${text(t, "StorageClass")} after ${text(t, "Days") || text(t, "Date")} days`);
  for (const e of kids(r, "NoncurrentVersionExpiration")) actions.push(`expire noncurrent after ${text(e, "NoncurrentDays")} days` + (text(e, "NewerNoncurrentVersions") ? ` (keep ${text(e, "NewerNoncurrentVersions")})` : ""));
  for (const t of kids(r, "NoncurrentVersionTransition")) actions.push(`noncurrent to ${text(t, "StorageClass")} after ${text(t, "NoncurrentDays")} days`);
  for (const a of kids(r, "AbortIncompleteMultipartUpload")) actions.push(`abort uploads after ${text(a, "DaysAfterInitiation")} days`);
  const status = text(r, "Status");
  return h("tr", { "data-rule": text(r, "ID") },
    h("td", { class: "mono" }, text(r, "ID")),
    h("td", { class: status === "Enabled" ? "ok" : "note" }, status),
    h("td", { class: "mono" }, [prefix ? `prefix ${prefix}` : "whole bucket", ...tags].join("; ")),
    h("td", null, actions.join("; ")));
}

async function lifecycleView(bucket) {
  let rules = null;
  try {
    const doc = await client.xml("GET", bucket, null, { query: [["lifecycle", ""]] });
    rules = kids(doc.documentElement, "Rule");
  } catch (e) {
    if (!(e instanceof S3Error && e.code === "NoSuchLifecycleConfiguration")) throw e;
  }
  const out = [h("h2", null, "Rules"),
    rules && rules.length ? table(["ID", "Status", "Applies to", "Actions"], rules.map(ruleRow), { id: "lifecycle-rules" })
      : h("p", { class: "note", id: "lifecycle-rules" }, "No lifecycle configuration on this bucket.")];
  if (isAdmin) {
    const st = await guard(() => client.admin("lifecycle-status", { bucket }));
    if (st) {
      out.push(h("h2", null, "Status"),
        h("p", null, "Lag: ", h("strong", { id: "lifecycle-lag" }, st.lag_ms != null ? `${Math.round(st.lag_ms / 1000)} s` : "—"),
          " · worker: ", st.worker ? `${st.worker.state}, ${st.worker.errors} errors` : "not running"),
        h("div", { id: "lifecycle-status" }, jsonView(st)));
    }
  }
  return out;
}

async function lockView(bucket) {
  let doc;
  try {
    doc = await client.xml("GET", bucket, null, { query: [["object-lock", ""]] });
  } catch (e) {
    if (e instanceof S3Error && e.code === "ObjectLockConfigurationNotFoundError") {
      return h("p", { class: "note", id: "object-lock" }, "Object Lock is not enabled on this bucket (it can only be turned on when a bucket is created).");
    }
    throw e;
  }
  const root = doc.documentElement;
  const ret = kids(kids(root, "Rule")[0], "DefaultRetention")[0];
  const info = {
    "Object Lock": text(root, "ObjectLockEnabled") || "Enabled",
    "Default retention": ret ? `${text(ret, "Mode")}, ${text(ret, "Days") ? text(ret, "Days") + " days" : text(ret, "Years") + " years"}` : "none",
  };
  const out = [h("div", { id: "object-lock" }, jsonView(info))];
  if (isAdmin) {
    const presets = await guard(() => client.admin("retention-presets"));
    if (presets) out.push(h("h2", null, "Retention presets (strata admin retention apply)"), jsonView(presets));
  }
  return out;
}

// ---- destruction log ----------------------------------------------------------------------------
async function destructionPage(_parts, q) {
  const args = { limit: 50 };
  if (q.get("before")) args.before = Number(q.get("before"));
  const page = await client.admin("destruction-log", args);
  const cp = page.latest_checkpoint;
  const result = h("div", { id: "verify-result" });
  const verify = h("button", { type: "button", id: "verify" }, "Verify the whole log");
  verify.addEventListener("click", async () => {
    verify.disabled = true;
    result.replaceChildren(h("p", { class: "note" }, "Verifying…"));
    const r = await guard(() => client.admin("destruction-verify"));
    verify.disabled = false;
    if (!r) { result.replaceChildren(); return; }
    result.replaceChildren(r.ok
      ? h("p", { class: "ok" }, `Verified: ${r.report.records} records, ${r.report.checkpoints} checkpoints, each signed and consistent; root ${r.report.root_hash}`)
      : h("p", { class: "bad" }, `Does not verify: ${r.message}`));
  });
  const rows = page.records.map(({ index, record: r }) => h("tr", null,
    h("td", { class: "num" }, index), h("td", null, when(r.destroyed_ms)),
    h("td", { class: "mono" }, r.bucket), h("td", { class: "mono" }, r.key), h("td", { class: "mono" }, r.version_id),
    h("td", { class: "num" }, bytes(r.size)),
    h("td", null, r.reason?.kind + (r.reason?.rule_id ? ` (${r.reason.rule_id})` : "")),
    h("td", { class: "mono" }, r.actor?.access_key || r.actor?.engine || r.actor?.user || ""),
    h("td", null, r.verification)));
  return [h("h1", null, "Destruction log"),
    jsonView({
      records: page.total,
      log: page.origin,
      "latest checkpoint": cp ? `${cp.tree_size} records, root ${cp.root_hash}, signed ${when(cp.timestamp_ms)}` : "none yet",
    }),
    h("div", { class: "bar" }, verify, result),
    h("details", null, h("summary", null, "Public key (give it to auditors: strata admin destruction verify)"), h("pre", null, page.public_key_pem)),
    h("h2", null, "Records, newest first"),
    rows.length ? table(["#", "Destroyed", "Bucket", "Key", "Version", "Size", "Reason", "By", "Verification"], rows, { id: "destruction-records" })
      : h("p", { class: "note", id: "destruction-records" }, "No object version has been destroyed yet."),
    page.next_before != null ? h("a", { href: link(["destruction"], { before: page.next_before }) }, "older »") : null];
}

// ---- cluster: readiness, disks, rebuild, workers ------------------------------------------------
async function clusterPage() {
  const ready = await fetch("/_strata/ready", { cache: "no-store", credentials: "omit" })
    .then(async (r) => ({ ok: r.ok, text: (await r.text()).trim() }))
    .catch((e) => ({ ok: false, text: String(e) }));
  const [disks, rebuild, workers, archive] = await Promise.all([
    guard(() => client.admin("disk-status")), guard(() => client.admin("rebuild-status")),
    guard(() => client.admin("worker-list")), guard(() => client.admin("archive-status")),
  ]);
  const diskRows = (disks?.disks || []).map((d) => h("tr", null,
    h("td", null, d.name), h("td", { class: "mono" }, d.dir),
    h("td", { class: d.ok ? "ok" : "bad" }, d.ok ? "ok" : d.error || "unavailable"),
    h("td", { class: "num" }, d.used_fraction != null ? (d.used_fraction * 100).toFixed(1) + " %" : ""),
    h("td", { class: "num" }, (d.high_water * 100).toFixed(0) + " %")));
  return [h("h1", null, "Cluster"),
    h("p", null, "Readiness: ", h("strong", { class: ready.ok ? "ok" : "bad", id: "readiness" }, ready.text)),
    h("h2", null, "Disks of this process"),
    diskRows.length ? table(["Disk", "Directory", "State", "Used", "Write limit"], diskRows, { id: "disks" }) : h("p", { class: "note", id: "disks" }, disks?.note || "No local disks."),
    h("h2", null, "Storage nodes and rebuild"), h("div", { id: "rebuild" }, jsonView(rebuild)),
    h("h2", null, "Background workers"), jsonView(workers),
    h("h2", null, "Archive tier"), jsonView(archive)];
}

// ---- migrations -------------------------------------------------------------------------------
async function migrationsPage(_parts, q) {
  const list = await client.admin("migration-list");
  const out = [h("h1", null, "Migrations"), h("div", { id: "migrations" }, jsonView(list))];
  const name = q.get("job");
  if (name) out.push(h("h2", null, `Job ${name}`), jsonView(await client.admin("migration-status", { name })));
  const jobs = Array.isArray(list) ? list : list?.jobs || [];
  if (jobs.length) {
    out.push(h("p", null, "Details: ", jobs.map((j) => [h("a", { href: link(["migrations"], { job: j.name }) }, j.name), " "])));
  }
  return out;
}

// ---- users and keys -----------------------------------------------------------------------------
function secretBox(out) {
  return h("div", { class: "secret", id: "new-secret" },
    h("p", null, h("strong", null, "Copy the secret now: it is not shown again.")),
    jsonView({ user: out.user, access_key: out.access_key, secret_key: out.secret_key }));
}

async function usersPage() {
  const users = await client.admin("user-list");
  const shown = h("div");
  const name = h("input", { type: "text", id: "new-user", placeholder: "user name", required: true });
  const form = h("form", { id: "add-user" }, name, h("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = await guard(() => client.admin("user-add", { name: name.value.trim() }));
    if (out) { await route(); $("#view").prepend(secretBox(out)); }
  });
  const rows = users.flatMap((u) => {
    const add = h("button", { class: "secondary", type: "button" }, "New key");
    add.addEventListener("click", async () => {
      const out = await guard(() => client.admin("key-create", { user: u.user }));
      if (out) { await route(); $("#view").prepend(secretBox(out)); }
    });
    const keys = u.keys.length ? u.keys : [null];
    return keys.map((k, i) => h("tr", { "data-user": u.user },
      h("td", null, i ? "" : u.user), h("td", null, i ? "" : (u.is_admin ? "admin" : "")),
      h("td", null, i ? "" : when(u.created)),
      h("td", { class: "mono" }, k ? k.access_key : ""),
      h("td", { class: k?.revoked ? "bad" : "" }, k ? (k.revoked ? "revoked" : "active") : ""),
      h("td", null, k && !k.revoked ? confirmButton("Revoke", async () => { await client.admin("key-revoke", { access_key: k.access_key }); route(); }) : null,
        i ? null : add)));
  });
  return [h("h1", null, "Users and keys"), shown, form,
    table(["User", "", "Created", "Access key", "State", ""], rows, { id: "users" })];
}

// ---- start ------------------------------------------------------------------------------------
window.addEventListener("hashchange", route);
$("#signout").addEventListener("click", signOut);
$("#refresh").addEventListener("click", route);
// The key lives in this module's memory only: not in any storage another page of this origin
// (an object served by the S3 API is one) could read. A reload or a closed tab signs out.
route();
