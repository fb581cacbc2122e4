// The dashboard's API client: JSON calls and server-sent events over fetch(), both with the bearer
// token the user gave (EventSource cannot send headers). Every URL is relative to the page, so the
// dashboard works under whatever path prefix a proxy serves the API at.

const KEY = "ascl.token";
const API = "../api/v1/";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

// `ascl serve` may print /ui/#token=...: a fragment never reaches a server or its logs. It is taken
// out of the address bar (and history) at once.
export function takeTokenFromFragment() {
  if (!location.hash.startsWith("#token=")) return;
  const given = new URLSearchParams(location.hash.slice(1)).get("token"); // a broken escape stays as it is
  if (given) setToken(given);
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
}

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (value) => sessionStorage.setItem(KEY, value.trim());
export const signOut = () => sessionStorage.removeItem(KEY);

function headers(accept) {
  return { Authorization: `Bearer ${token()}`, Accept: accept };
}

async function failure(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = body.detail ?? body.error ?? JSON.stringify(body);
    if (typeof detail !== "string") detail = JSON.stringify(detail);
  } catch {
    // not JSON: the status text says enough
  }
  return new ApiError(response.status, detail);
}

export async function call(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers("application/json") };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

// An image the API serves behind the token, as a blob: URL for an <img> (the caller revokes it).
export async function image(path) {
  const response = await fetch(API + path, { headers: headers("image/png") });
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}

// Reads a text/event-stream response and calls onEvent(type, data, id) per event until it ends or
// `signal` aborts it; `lastEventId` (the id of the last event a previous stream gave) resumes there.
export async function stream(path, onEvent, signal, lastEventId = "") {
  const sent = headers("text/event-stream");
  if (lastEventId) sent["Last-Event-ID"] = lastEventId;
  const response = await fetch(API + path, { headers: sent, signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      let id = "";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      onEvent(type, data.join("\n"), id);
    }
  }
}
