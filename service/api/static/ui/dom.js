// DOM helpers. Every value from the API goes in as text (text nodes, attributes), never as HTML, so a
// job name or log line cannot inject markup; links take only http(s) URLs or in-page routes.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "href") {
      const href = safeHref(value);
      if (href) node.setAttribute("href", href);
    } else if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined).map(asNode));
  return node;
}

const asNode = (child) => (child instanceof Node ? child : document.createTextNode(String(child)));

export function safeHref(value) {
  const text = String(value);
  if (text.startsWith("#/")) return text;
  try {
    const url = new URL(text, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export function table(headings, rows, empty) {
  if (rows.length === 0) return el("p", { class: "muted" }, empty);
  return el("table", {}, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

export const status = (value) => el("span", { class: `status ${value}` }, value);
export const jobLink = (job) => el("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name || job.id);

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function when(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  const delta = (moment.getTime() - Date.now()) / 1000;
  const relative = delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
  return el("span", { title: moment.toISOString() }, relative);
}

export const number = (value, digits = 3) =>
  typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";

// "epoch 2/5 · step 40/100 (40%)" from a job's progress; "" when it has none yet.
export function progressText(progress) {
  if (!progress) return "";
  const parts = [progress.phase ?? ""];
  if (progress.epoch !== null && progress.epoch !== undefined) {
    parts.push(`epoch ${progress.epoch + 1}${progress.epochs ? `/${progress.epochs}` : ""}`);
  }
  if (progress.step) {
    const share = progress.total_steps ? ` (${Math.floor((100 * progress.step) / progress.total_steps)}%)` : "";
    parts.push(`step ${progress.step}${progress.total_steps ? `/${progress.total_steps}` : ""}${share}`);
  }
  return parts.filter(Boolean).join(" · ");
}

// Steps done when the worker reports them, else finished epochs.
function share(progress) {
  if (!progress) return 0;
  if (progress.total_steps && progress.step) return Math.min(1, progress.step / progress.total_steps);
  if (progress.epochs && progress.epoch !== null && progress.epoch !== undefined) {
    return Math.min(1, (progress.epoch + 1) / progress.epochs);
  }
  return 0;
}

export function progressBar(progress) {
  const done = el("div");
  done.style.width = `${(share(progress) * 100).toFixed(1)}%`; // through the CSSOM: the page's CSP forbids style attributes
  return el("div", { class: "bar" }, done);
}

// The latest training averages and validation figures, e.g. "loss 0.412 · val robust_acc 0.31".
export function latestMetrics(progress) {
  if (!progress) return "";
  const train = Object.entries(progress.metrics ?? {}).map(([k, v]) => `${k} ${number(v)}`);
  const val = Object.entries(progress.val ?? {}).map(([k, v]) => `val ${k} ${number(v)}`);
  return [...train, ...val].join(" · ");
}
