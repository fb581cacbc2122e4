// The dashboard: a token prompt, then one page per route (#/, #/jobs/ID, #/models, #/models/NAME), each refreshed
// every few seconds without reloading; the job page also follows the job's log stream.

import { ApiError, call, setToken, signOut, takeTokenFromFragment, token } from "./api.js";
import { el } from "./dom.js";
import { jobPage } from "./job.js";
import { modelPage, modelsPage } from "./models.js";
import { overview } from "./overview.js";

const REFRESH_MS = 2000;
const view = document.getElementById("view");
const message = document.getElementById("message");
let current = { stop: () => {} };

function showError(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut();
    login("The token was refused: paste a valid one.");
    return;
  }
  message.textContent = error.message;
}

function login(note = "") {
  current.stop();
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const input = el("input", { type: "password", id: "token", autocomplete: "off", placeholder: "ascl_…" });
  const submit = (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    setToken(input.value);
    route();
  };
  message.textContent = note;
  view.replaceChildren(el("section", {}, el("h2", {}, "Sign in"),
    el("p", {}, "Paste an API token (`ascl tokens create`, or the admin token file that `ascl serve` wrote). ",
      "It stays in this browser tab only."),
    el("form", { class: "login", onsubmit: submit }, input, el("button", { type: "submit" }, "Use token"))));
}

// Runs `refresh` now and every REFRESH_MS until the route changes or it reports it is done.
function every(refresh) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      const done = await refresh();
      if (!stopped) message.textContent = "";
      if (done) return;
    } catch (error) {
      if (stopped) return;
      showError(error);
      if (error instanceof ApiError && error.status === 401) return;
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function route() {
  current.stop();
  if (!token()) return login();
  document.getElementById("sign-out").hidden = false;
  call("whoami").then((me) => { document.getElementById("who").textContent = me.subject; }).catch(showError);
  const hash = location.hash || "#/";
  const job = /^#\/jobs\/([A-Za-z0-9_-]+)$/.exec(hash);
  const model = /^#\/models\/([^/]+)$/.exec(hash);
  const abort = new AbortController();
  let refresh = () => overview(view);
  let release = () => {};
  if (job) refresh = jobPage(view, job[1], abort.signal);
  else if (hash === "#/models") refresh = () => modelsPage(view);
  else if (model) ({ refresh, stop: release } = modelPage(view, decodeURIComponent(model[1])));
  const onModels = hash === "#/models" || Boolean(model);
  document.getElementById("nav-overview").classList.toggle("active", !job && !onModels);
  document.getElementById("nav-models").classList.toggle("active", onModels);
  const stop = every(refresh);
  current = { stop: () => { stop(); abort.abort(); release(); } };
}

takeTokenFromFragment();
document.getElementById("sign-out").addEventListener("click", () => { signOut(); login(); });
document.addEventListener("ascl:error", (event) => showError(event.detail));
document.addEventListener("ascl:changed", () => route());
window.addEventListener("hashchange", route);
route();
