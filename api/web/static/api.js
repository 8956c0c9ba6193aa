// The REST API as the app calls it: same-origin, the session cookie, and the CSRF token on writes.
const PREFIX = "/api/v1";
const session = { signedIn: false, readOnly: true, csrf: null };

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function currentSession() {
  return session;
}

function remember(doc) {
  session.signedIn = Boolean(doc.signed_in);
  session.readOnly = doc.read_only !== false;
  session.csrf = doc.csrf_token || null;
  return session;
}

// Call a route: `json` or `form` (FormData) as the body, `query` as the query string.
export async function api(method, path, { json, form, query } = {}) {
  const url = new URL(PREFIX + path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  if (method !== "GET" && method !== "HEAD" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(url, { method, headers, body, credentials: "same-origin", cache: "no-store" });
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const doc = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = doc && doc.error ? doc.error.message : `${method} ${path}: HTTP ${response.status}`;
    throw new ApiError(response.status, message, doc);
  }
  return doc;
}

export async function loadSession() {
  return remember(await api("GET", "/session"));
}

export async function signIn(key) {
  return remember(await api("POST", "/session", { json: { key } }));
}

export async function signOut() {
  await api("DELETE", "/session");
  return remember({ signed_in: false });
}

export function thumbnailUrl(imageId, size = 256) {
  return `${PREFIX}/images/${imageId}/thumbnail?size=${size}`;
}

export function fileUrl(imageId) {
  return `${PREFIX}/images/${imageId}/file`;
}
