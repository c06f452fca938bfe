// AWS Signature Version 4 in the browser (WebCrypto HMAC-SHA256), for S3 and the admin API.
// The secret never leaves this module except as signatures.

const enc = new TextEncoder();

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data) {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmac(key, msg) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(msg)));
}

// RFC 3986 encoding as SigV4 wants it: every byte but A-Z a-z 0-9 - _ . ~ (and "/" in paths).
export function uriEncode(s, keepSlash = false) {
  const e = encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return keepSlash ? e.replace(/%2F/g, "/") : e;
}

function amzDate(d) {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// Signing keys are per day; cache the latest one so a page of requests costs one HMAC chain.
let cached = null;
async function signingKey(secret, day, region) {
  const id = `${day}/${region}`;
  if (cached && cached.id === id && cached.secret === secret) return cached.key;
  let k = await hmac(enc.encode("AWS4" + secret), day);
  k = await hmac(k, region);
  k = await hmac(k, "s3");
  k = await hmac(k, "aws4_request");
  cached = { id, secret, key: k };
  return k;
}

function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [uriEncode(k), uriEncode(v ?? "")])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

// Signs a request to this origin. `path` is the decoded path ("/bucket/key"), `query` a list of
// [name, value], `headers` lower-case names. Returns the URL to fetch and the headers to send.
export async function sign({ method, path, query = [], headers = {}, payloadHash, creds, now = new Date() }) {
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const hdrs = { ...headers, "x-amz-date": date, "x-amz-content-sha256": payloadHash };
  const signed = { host: location.host, ...hdrs };
  const names = Object.keys(signed).map((n) => n.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(signed).map(([k, v]) => [k.toLowerCase(), String(v).trim()]));
  const canonPath = uriEncode(path, true);
  const canonQuery = canonicalQuery(query);
  const canonical = [
    method,
    canonPath,
    canonQuery,
    names.map((n) => `${n}:${lower[n]}\n`).join(""),
    names.join(";"),
    payloadHash,
  ].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonical)].join("\n");
  const sig = hex(await hmac(await signingKey(creds.secretKey, day, creds.region), toSign));
  hdrs.authorization =
    `AWS4-HMAC-SHA256 Credential=${creds.accessKey}/${scope}, SignedHeaders=${names.join(";")}, Signature=${sig}`;
  return { url: canonPath + (canonQuery ? "?" + canonQuery : ""), headers: hdrs };
}

// A presigned GET URL (query-string signature, host signed only), valid `expires` seconds.
export async function presign({ method = "GET", path, query = [], creds, expires = 300, now = new Date() }) {
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const q = [
    ...query,
    ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
    ["X-Amz-Credential", `${creds.accessKey}/${scope}`],
    ["X-Amz-Date", date],
    ["X-Amz-Expires", String(expires)],
    ["X-Amz-SignedHeaders", "host"],
  ];
  const canonPath = uriEncode(path, true);
  const canonQuery = canonicalQuery(q);
  const canonical = [method, canonPath, canonQuery, `host:${location.host}\n`, "host", "UNSIGNED-PAYLOAD"].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonical)].join("\n");
  const sig = hex(await hmac(await signingKey(creds.secretKey, day, creds.region), toSign));
  return `${canonPath}?${canonQuery}&X-Amz-Signature=${sig}`;
}
