// The overview: queues, waiting jobs (position, reason, estimated start), running jobs (live
// progress, ETA, latest metrics, cancel) and recently finished jobs (outcome and MLflow links).

import { call } from "./api.js";
import { duration, el, jobLink, latestMetrics, progressBar, progressText, status, table, when } from "./dom.js";
import { cancelButton, mlflowLinks } from "./actions.js";

const ACTIVE = ["CLAIMED", "SUBMITTED", "RUNNING", "CANCELLING"];
const FINISHED = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
const query = (statuses, limit) => `jobs?${statuses.map((s) => `status=${s}`).join("&")}&limit=${limit}`;

function limits(queue) {
  const parts = [
    ["GPUs", queue.max_gpus],
    ["CPUs", queue.max_cpus],
    ["GPUs per user", queue.user_max_gpus],
    ["CPUs per user", queue.user_max_cpus],
  ].filter(([, value]) => value !== null);
  return parts.length ? parts.map(([name, value]) => `${name} ≤ ${value}`).join(", ") : "none";
}

function queuesSection(queues) {
  const rows = queues.map((q) =>
    el("tr", {}, el("td", {}, q.name), el("td", { class: "num" }, q.queued), el("td", { class: "num" }, q.running),
      el("td", {}, limits(q)), el("td", { class: "muted" }, q.description)),
  );
  return table(["queue", "waiting", "running", "limits", "description"], rows, "No queues.");
}

function waitingSection(jobs) {
  const ordered = [...jobs].sort((a, b) => a.queue.localeCompare(b.queue) || (a.queue_position ?? 1e9) - (b.queue_position ?? 1e9));
  const rows = ordered.map((job) =>
    el("tr", { "data-job": job.id },
      el("td", { class: "num" }, job.queue_position ?? "—"), el("td", {}, jobLink(job)), el("td", {}, job.queue),
      el("td", {}, job.owner), el("td", { class: "num" }, job.priority), el("td", {}, job.pending_reason ?? "—"),
      el("td", {}, when(job.estimated_start)), el("td", {}, cancelButton(job))),
  );
  return table(["#", "job", "queue", "owner", "priority", "reason", "estimated start", ""], rows, "Nothing is waiting.");
}

function runningSection(jobs) {
  const rows = jobs.map((job) =>
    el("tr", { "data-job": job.id },
      el("td", {}, jobLink(job)), el("td", {}, status(job.status)), el("td", {}, job.owner),
      el("td", {}, el("span", { class: "progress" }, progressText(job.progress)), progressBar(job.progress)),
      el("td", { class: "eta" }, duration(job.progress?.eta_s)),
      el("td", { class: "mono metrics" }, latestMetrics(job.progress)), el("td", {}, cancelButton(job))),
  );
  return table(["job", "state", "owner", "progress", "ETA", "latest metrics", ""], rows, "Nothing is running.");
}

function finishedSection(jobs) {
  const rows = jobs.map((job) =>
    el("tr", { "data-job": job.id },
      el("td", {}, jobLink(job)), el("td", {}, status(job.status)), el("td", {}, job.kind), el("td", {}, job.owner),
      el("td", {}, when(job.finished_at)), el("td", { class: "muted" }, job.error_class ?? ""), el("td", {}, mlflowLinks(job))),
  );
  return table(["job", "outcome", "kind", "owner", "finished", "error", "MLflow"], rows, "No finished jobs yet.");
}

const section = (id, title, count, body) =>
  el("section", { id }, el("h2", {}, title, count === null ? "" : el("span", { class: "count" }, ` (${count})`)), body);

export async function overview(view) {
  const [queues, waiting, running, finished] = await Promise.all([
    call("queues"),
    call(query(["QUEUED"], 200)),
    call(query(ACTIVE, 200)),
    call(query(FINISHED, 25)),
  ]);
  view.replaceChildren(
    section("queues", "Queues", queues.length, queuesSection(queues)),
    section("running", "Running", running.items.length, runningSection(running.items)),
    section("waiting", "Waiting", waiting.items.length, waitingSection(waiting.items)),
    section("finished", "Recently finished", null, finishedSection(finished.items)),
  );
}
