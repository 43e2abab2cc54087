// The one door to the server: every request goes through here, with the API key (kept in
// localStorage, entered in the header's form), and failures become ApiError or a message
// in the error banner at the top of the page. Tabs never touch fetch or the key.
import { $ } from "./dom.js";

const KEY_ITEM = "asl-api-key";

export function apiKey() { return localStorage.getItem(KEY_ITEM) || ""; }

// The banner; an empty text hides it.
export function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

export function showKeyError(detail) {
  showError(`API key: ${detail}. Enter the server's key at the top right.`);
}

// `body` is the server's JSON answer (a 409 from POST /v1/train names the running job).
export class ApiError extends Error {
  constructor(status, detail, body = null) { super(detail); this.status = status; this.body = body; }
}

function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

// fetch with the key; the parsed JSON body, or an ApiError saying what the server said.
export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = detailText(body, response.status);
    if (response.status === 401) {
      showKeyError(detail);
      $("api-key").focus();
    }
    throw new ApiError(response.status, detail, body);
  }
  return body;
}

export function postJson(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

// An error the user must see (401s already said so, with the key box).
export function report(err) {
  if (!(err instanceof ApiError && err.status === 401)) showError(err.message || String(err));
}

// /readyz needs no key; it throws when the server cannot be reached.
export async function readiness() {
  return fetch("/readyz").then((r) => r.json());
}

// A WebSocket address on this server; browsers cannot set headers there, so the key
// goes in the query.
export function socketUrl(path, params) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams(params);
  if (apiKey()) query.set("api_key", apiKey());
  return `${proto}://${location.host}${path}?${query}`;
}

// The header's key form: show the stored key, store a new one, then call `changed`.
export function setupKeyForm(changed) {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_ITEM, $("api-key").value.trim());
    changed();
  });
}
