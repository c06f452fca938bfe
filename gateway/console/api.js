// The console's clients: S3 (XML) and the admin API (JSON), every request signed with SigV4.

import { sign, presign, sha256Hex } from "./sigv4.js";

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
// Bodies up to this size are hashed and the hash signed; bigger uploads are sent
// UNSIGNED-PAYLOAD (WebCrypto cannot hash a stream, and the whole file would sit in memory).
const HASHED_BODY_LIMIT = 256 * 1024 * 1024;

// An S3 error as the server reported it: its code and message.
export class S3Error extends Error {
  constructor(status, code, message, requestId) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
    this.requestId = requestId;
  }
}

async function errorOf(resp) {
  const text = await resp.text().catch(() => "");
  const rid = resp.headers.get("x-amz-request-id") || "";
  const doc = text ? new DOMParser().parseFromString(text, "application/xml") : null;
  const pick = (n) => doc?.getElementsByTagName(n)[0]?.textContent ?? "";
  const code = pick("Code") || `HTTP${resp.status}`;
  const message = pick("Message") || (doc ? "" : text.slice(0, 200)) || resp.statusText;
  return new S3Error(resp.status, code, message, rid);
}

const pathOf = (bucket, key) => (bucket ? "/" + bucket + (key != null ? "/" + key : "") : "/");

// RFC 6266 / 5987: an ASCII fallback name and the exact UTF-8 name.
function attachment(name) {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return `attachment; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

export class Client {
  constructor(creds) {
    this.creds = creds;
  }

  // One signed request; throws S3Error for any non-2xx answer.
  async request(method, bucket, key, { query = [], headers = {}, body = null } = {}) {
    let payloadHash = EMPTY_SHA256;
    if (body != null) {
      const size = body.size ?? body.byteLength ?? body.length;
      if (size > HASHED_BODY_LIMIT) payloadHash = "UNSIGNED-PAYLOAD";
      else {
        body = typeof body === "string" ? new TextEncoder().encode(body) : body;
        if (body instanceof Blob) body = new Uint8Array(await body.arrayBuffer());
        payloadHash = await sha256Hex(body);
      }
    }
    const { url, headers: h } = await sign({
      method, path: pathOf(bucket, key), query, headers, payloadHash, creds: this.creds,
    });
    const resp = await fetch(url, { method, headers: h, body, credentials: "omit", cache: "no-store" });
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }

  async xml(method, bucket, key, opts) {
    const text = await (await this.request(method, bucket, key, opts)).text();
    return new DOMParser().parseFromString(text, "application/xml");
  }

  // POST /?x-strata-admin=VERB with a JSON body: the operator API (admin users only).
  async admin(verb, args = {}) {
    const body = JSON.stringify(args);
    const resp = await this.request("POST", "", null, {
      query: [["x-strata-admin", verb]],
      headers: { "content-type": "application/json" },
      body,
    });
    return resp.json();
  }

  // A short-lived presigned GET that downloads (Content-Disposition: attachment).
  downloadUrl(bucket, key, versionId) {
    const name = key.split("/").pop() || "download";
    const query = [["response-content-disposition", attachment(name)]];
    if (versionId) query.push(["versionId", versionId]);
    return presign({ path: pathOf(bucket, key), query, creds: this.creds, expires: 300 });
  }
}

// Children of `node` named `name` (direct children only), and the text of one.
export const kids = (node, name) => Array.from(node?.children ?? []).filter((c) => c.localName === name);
export const text = (node, name) => kids(node, name)[0]?.textContent ?? "";
