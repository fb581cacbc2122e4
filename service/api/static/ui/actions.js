// Cancel buttons and MLflow links, shared by the overview and the job page.

import { call } from "./api.js";
import { el } from "./dom.js";

const CANCELLABLE = new Set(["QUEUED", "CLAIMED", "SUBMITTED", "RUNNING"]);

export function cancelButton(job) {
  if (!CANCELLABLE.has(job.status) || job.redacted) return "";
  const cancel = async (event) => {
    event.target.disabled = true;
    if (!window.confirm(`Cancel job ${job.name || job.id}?`)) {
      event.target.disabled = false;
      return;
    }
    try {
      await call(`jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
      document.dispatchEvent(new CustomEvent("ascl:changed"));
    } catch (error) {
      document.dispatchEvent(new CustomEvent("ascl:error", { detail: error }));
      event.target.disabled = false;
    }
  };
  return el("button", { type: "button", class: "danger cancel", onclick: cancel }, "Cancel");
}

// The MLflow UI's address is the part of the run URL before its "#/" route.
function modelVersionUrl(job) {
  if (!job.mlflow_run_url || !job.model_name || !job.registered_model_version) return null;
  const ui = job.mlflow_run_url.split("/#/")[0];
  return `${ui}/#/models/${encodeURIComponent(job.model_name)}/versions/${encodeURIComponent(job.registered_model_version)}`;
}

export function mlflowLinks(job) {
  const links = [];
  if (job.mlflow_run_url) links.push(el("a", { href: job.mlflow_run_url, target: "_blank", rel: "noopener" }, "run"));
  const version = modelVersionUrl(job);
  if (version) {
    links.push(" · ", el("a", { href: version, target: "_blank", rel: "noopener" },
      `${job.model_name} v${job.registered_model_version}`));
  }
  return links.length ? el("span", {}, links) : el("span", { class: "muted" }, "—");
}
