// One job: its fields, live progress, metric curves, events and the log, followed as it grows
// through the API's server-sent-events log stream.

import { call, stream } from "./api.js";
import { cancelButton, mlflowLinks } from "./actions.js";
import { epochCharts } from "./chart.js";
import { duration, el, latestMetrics, number, progressBar, progressText, status, table, when } from "./dom.js";

const MAX_LOG_LINES = 2000;
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]);

function fields(job) {
  const rows = [
    ["id", el("code", {}, job.id)],
    ["kind", job.kind],
    ["owner", job.owner],
    ["queue", `${job.queue} (priority ${job.priority})`],
    ["created", when(job.created_at)],
    ["started", when(job.started_at)],
    ["finished", when(job.finished_at)],
    ["attempts", job.attempts],
    ["MLflow", mlflowLinks(job)],
  ];
  if (job.status === "QUEUED") {
    rows.push(["position", job.queue_position ?? "—"], ["waiting for", job.pending_reason ?? "—"],
      ["estimated start", when(job.estimated_start)]);
  }
  if (job.error_class) rows.push(["error", `${job.error_class}: ${job.error_message ?? ""}`]);
  const test = job.result?.test;
  if (test) rows.push(["test accuracy", `clean ${number(test.clean_acc)} · robust ${number(test.robust_acc)}`]);
  return el("dl", { class: "fields" }, rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
}

function progressBlock(job) {
  return el("div", {},
    el("p", {}, el("span", { id: "progress-text" }, progressText(job.progress) || "no progress reported yet"),
      " · ETA ", el("span", { id: "eta" }, duration(job.progress?.eta_s))),
    progressBar(job.progress),
    el("p", { class: "mono", id: "latest-metrics" }, latestMetrics(job.progress)));
}

function eventsTable(events) {
  const rows = events.map((e) =>
    el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.from_status ?? "—"), el("td", {}, status(e.to_status)),
      el("td", {}, e.actor), el("td", {}, e.reason), el("td", { class: "num" }, e.attempt ?? "")),
  );
  return table(["at", "from", "to", "by", "reason", "attempt"], rows, "No events.");
}

// Follows the log stream into `pre`. The API ends a stream after a while even if the job runs on:
// then it reconnects, and the new stream goes on from the last line received.
function followLog(jobId, pre, signal, lines = [], lastId = "") {
  let ended = null;
  const append = (type, data, id) => {
    if (type === "end") ended = data;
    if (type !== "message") return;
    if (id) lastId = id;
    lines.push(data);
    if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
  stream(`jobs/${encodeURIComponent(jobId)}/logs/stream`, append, signal, lastId)
    .then(() => {
      if (!signal.aborted && !TERMINAL.has(ended)) {
        setTimeout(() => signal.aborted || followLog(jobId, pre, signal, lines, lastId), 2000);
      }
    })
    .catch((error) => {
      if (!signal.aborted) pre.textContent = `${lines.join("\n")}\n[log stream ended: ${error.message}]`;
    });
}

export function jobPage(view, jobId, signal) {
  const path = `jobs/${encodeURIComponent(jobId)}`;
  const parts = {
    head: el("h2", {}), fields: el("div", {}), progress: el("div", {}), charts: el("div", { class: "charts" }),
    events: el("div", {}), log: el("pre", { class: "log", id: "log" }),
  };
  view.replaceChildren(
    el("section", { id: "job" }, parts.head, parts.fields),
    el("section", { id: "job-progress" }, el("h2", {}, "Progress"), parts.progress, parts.charts),
    el("section", { id: "job-events" }, el("h2", {}, "Events"), parts.events),
    el("section", { id: "job-log" }, el("h2", {}, "Log"), parts.log),
  );
  let streaming = false;
  let epochsShown = -1;
  return async () => {
    const [job, events] = await Promise.all([call(path), call(`${path}/events`).catch(() => [])]);
    parts.head.replaceChildren(job.name || job.id, " ", status(job.status), " ", cancelButton(job));
    parts.fields.replaceChildren(fields(job));
    parts.progress.replaceChildren(progressBlock(job));
    parts.events.replaceChildren(eventsTable(events));
    const metrics = job.redacted ? { epochs: [] } : await call(`${path}/metrics`);
    if (metrics.epochs.length !== epochsShown) {
      epochsShown = metrics.epochs.length;
      parts.charts.replaceChildren(...(epochsShown ? epochCharts(metrics.epochs) : [el("p", { class: "muted" }, "No finished epoch yet.")]));
    }
    if (!streaming && !job.redacted && job.status !== "QUEUED") {
      streaming = true;
      followLog(job.id, parts.log, signal);
    }
    return TERMINAL.has(job.status);
  };
}
