// Calls to this server's API: the key from sessionStorage, errors as ApiError with the status and
// the field the server names (`error.param`), and server-sent events read from a fetch body.

const KEY = "modelyard.apiKey";

export class ApiError extends Error {
  constructor(status, message, param = null, code = null) {
    super(message);
    this.status = status; // 0: the server could not be reached or the connection broke
    this.param = param;
    this.code = code;
  }

  // "401 Unauthorized: ..." so that a refusal is shown as what it is.
  describe() {
    const names = { 0: "No connection", 401: "401 Unauthorized", 403: "403 Forbidden" };
    const label = names[this.status] ?? (this.status ? `Error ${this.status}` : "Error");
    return `${label}: ${this.message}`;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

// Listeners told about every 401 (the app opens the key prompt).
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

function headers(body) {
  const h = {};
  if (body !== undefined) h["content-type"] = "application/json";
  const key = apiKey.get();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function errorFrom(response) {
  let message = response.statusText || "request failed";
  let param = null;
  let code = null;
  try {
    const body = await response.json();
    message = body?.error?.message ?? body?.detail ?? message;
    param = body?.error?.param ?? null;
    code = body?.error?.code ?? null;
  } catch {
    // not JSON: keep the status text
  }
  const error = new ApiError(response.status, message, param, code);
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener(error));
  return error;
}

async function send(method, path, body, signal) {
  try {
    return await fetch(path, {
      method,
      headers: headers(body),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the server did not answer (${err.message}); is it still running?`);
  }
}

export async function api(method, path, body, { signal } = {}) {
  const response = await send(method, path, body, signal);
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

export const get = (path, options) => api("GET", path, undefined, options);

// POST a streaming request; call onEvent with each parsed `data:` payload until [DONE].
// A connection lost mid-stream is an ApiError with status 0; an in-band error event one with
// the status it carries.
export async function stream(path, body, onEvent, { signal } = {}) {
  const response = await send("POST", path, body, signal);
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, `the connection was lost during the answer (${err.message})`);
    }
    if (chunk.done) break;
    buffer += chunk.value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error) {
        throw new ApiError(null, event.error.message, event.error.param ?? null, event.error.code ?? null);
      }
      onEvent(event);
    }
  }
  throw new ApiError(0, "the answer ended before it was complete (the connection was closed)");
}
