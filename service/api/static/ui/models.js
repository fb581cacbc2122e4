// Registered models with their champion's robustness (GET /api/v1/models, service/api/model_schemas.py).

import { ApiError, call } from "./api.js";
import { el, number, table, when } from "./dom.js";

function threat(robustness) {
  const tm = robustness.threat_model;
  return `${tm.norm} ε=${number(tm.epsilon, 4)}`;
}

function row(model) {
  const champion = model.champion;
  const r = champion?.robustness;
  return el("tr", { "data-model": model.name },
    el("td", {}, model.name), el("td", {}, model.owner), el("td", {}, model.group ?? "—"),
    el("td", { class: "num" }, model.versions), el("td", { class: "num" }, model.latest_version ?? "—"),
    el("td", { class: "num" }, champion ? `v${champion.version}` : "—"),
    el("td", { class: "num" }, r ? number(r.clean_acc) : "—"),
    el("td", { class: "num" }, r ? `${number(r.pgd_acc)} (${r.pgd_steps} steps)` : "—"),
    el("td", { class: "num" }, r ? number(r.autoattack_acc) : "—"),
    el("td", {}, r ? threat(r) : "—"),
    el("td", {}, champion?.evaluation ?? "—"),
    el("td", {}, champion ? when(champion.created_at) : "—"),
    el("td", {}, champion?.mlflow_url ? el("a", { href: champion.mlflow_url, target: "_blank", rel: "noopener" }, "version") : "—"),
  );
}

export async function modelsPage(view) {
  let models = [];
  try {
    models = (await call("models")).models;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  const headings = ["model", "owner", "group", "versions", "latest", "champion", "clean acc", "PGD acc",
    "AutoAttack acc", "threat model", "evaluation", "registered", "MLflow"];
  view.replaceChildren(el("section", { id: "models" }, el("h2", {}, "Models"),
    table(headings, models.map(row), "No models yet.")));
}
