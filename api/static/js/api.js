// Every request the dashboard makes goes through `request`: JSON in and out, the API's one error
// shape turned into an ApiError, and the API key. When the server answers 401, the page asks for
// the key once (one prompt shared by every request waiting on it), keeps it in sessionStorage
// (this tab only, gone when it closes) and sends it as X-API-Key on every request from then on.

const KEY_STORAGE = "rvt.apiKey";

export class ApiError extends Error {
  constructor(status, error, ms = null) {
    super(error.message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details ?? null;
    this.requestId = error.request_id ?? null;
    this.ms = ms;
  }
}

let askForKey = null; // set by the page: (rejected: boolean) => Promise<string | null>
let pendingPrompt = null;
let declined = false; // the user closed the prompt: background polls stop asking

export function onKeyNeeded(prompt) {
  askForKey = prompt;
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: the key lives as long as the prompt's answer
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled */
  }
  declined = false;
  document.dispatchEvent(new CustomEvent("apikeychange"));
}

function obtainKey(rejected, interactive) {
  if (!askForKey || (declined && !interactive)) return Promise.resolve(null);
  if (!pendingPrompt) {
    pendingPrompt = askForKey(rejected).then((key) => {
      pendingPrompt = null;
      if (key) setApiKey(key);
      else declined = true;
      return key;
    });
  }
  return pendingPrompt;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorOf(response, data) {
  if (data && typeof data === "object" && data.error && typeof data.error === "object") {
    return data.error;
  }
  return {
    code: `http_${response.status}`,
    message: `${response.status} ${response.statusText || "error"}`,
  };
}

/**
 * One API call. Options: `json` (a body to send as JSON), `body` (FormData...), `headers`,
 * `accept` (error statuses whose body is returned rather than thrown, e.g. [503] for /readyz),
 * `interactive` (false for background polls: they do not re-open a prompt the user closed).
 * Resolves to {data, status, ms}; `ms` is measured here, from the call to the parsed answer.
 */
export async function request(method, path, options = {}) {
  const { json, body, headers = {}, accept = [], interactive = true } = options;
  for (let attempt = 0; ; attempt += 1) {
    const sent = { Accept: "application/json", ...headers };
    let payload = body;
    if (json !== undefined) {
      sent["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const key = apiKey();
    if (key) sent["X-API-Key"] = key;
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, { method, headers: sent, body: payload, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, {
        code: "network_error",
        message: `the API did not answer (${err && err.message ? err.message : err})`,
      });
    }
    const data = await readBody(response);
    const ms = performance.now() - started;
    if (response.status === 401 && attempt < 3) {
      if (key) setApiKey(null); // the key we sent was refused
      if (await obtainKey(Boolean(key), interactive)) continue;
    }
    if (!response.ok && !accept.includes(response.status)) {
      throw new ApiError(response.status, errorOf(response, data), ms);
    }
    return { data, status: response.status, ms };
  }
}

/** A random hex id (crypto.randomUUID needs a secure context; this does not). */
export function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
