// Registered models: the list with each champion's robustness (GET /api/v1/models), and one model's
// versions side by side, sortable by their figures, with the clean-vs-robust comparison plot and the
// alias history (GET /api/v1/models/{name}; service/api/model_schemas.py has the fields).

import { ApiError, call, image } from "./api.js";
import { el, number, table, when } from "./dom.js";

const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;

function threat(robustness) {
  const tm = robustness.threat_model;
  return `${tm.norm} ε=${number(tm.epsilon, 4)}`;
}

const pgd = (r) => (r ? `${number(r.pgd_acc)} (${r.pgd_steps} steps)` : "—");
const mlflowLink = (version) =>
  version?.mlflow_url ? el("a", { href: version.mlflow_url, target: "_blank", rel: "noopener" }, "version") : "—";

function modelRow(model) {
  const champion = model.champion;
  const r = champion?.robustness;
  return el("tr", { "data-model": model.name },
    el("td", {}, el("a", { href: modelHref(model.name) }, model.name)), el("td", {}, model.owner),
    el("td", {}, model.group ?? "—"),
    el("td", { class: "num" }, model.versions), el("td", { class: "num" }, model.latest_version ?? "—"),
    el("td", { class: "num" }, champion ? `v${champion.version}` : "—"),
    el("td", { class: "num" }, r ? number(r.clean_acc) : "—"),
    el("td", { class: "num" }, pgd(r)),
    el("td", { class: "num" }, r ? number(r.autoattack_acc) : "—"),
    el("td", {}, r ? threat(r) : "—"),
    el("td", {}, champion?.evaluation ?? "—"),
    el("td", {}, champion ? when(champion.created_at) : "—"),
    el("td", {}, mlflowLink(champion)),
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
    table(headings, models.map(modelRow), "No models yet.")));
}

// The version table's columns; those with a `sort` key sort on the server (GET ...?sort=&order=).
const COLUMNS = [
  { heading: "version", sort: "version" },
  { heading: "aliases" },
  { heading: "clean acc", sort: "clean_acc" },
  { heading: "PGD acc", sort: "pgd_acc" },
  { heading: "AutoAttack acc", sort: "autoattack_acc" },
  { heading: "examples" },
  { heading: "threat model" },
  { heading: "evaluation" },
  { heading: "registered", sort: "created_at" },
  { heading: "training job" },
  { heading: "MLflow" },
];

function versionRow(version) {
  const r = version.robustness;
  return el("tr", { "data-version": version.version },
    el("td", { class: "num" }, `v${version.version}`),
    el("td", {}, version.aliases.map((alias) => `@${alias}`).join(" ") || "—"),
    el("td", { class: "num clean" }, r ? number(r.clean_acc) : "—"),
    el("td", { class: "num pgd" }, pgd(r)),
    el("td", { class: "num autoattack" }, r ? number(r.autoattack_acc) : "—"),
    el("td", { class: "num" }, r ? r.examples : "—"),
    el("td", {}, r ? threat(r) : "—"),
    el("td", { class: "evaluation" },
      r?.eval_job_id ? el("a", { href: `#/jobs/${encodeURIComponent(r.eval_job_id)}` }, version.evaluation)
        : version.evaluation),
    el("td", {}, when(version.created_at)),
    el("td", {}, version.job_id ? el("a", { href: `#/jobs/${encodeURIComponent(version.job_id)}` }, "job") : "—"),
    el("td", {}, mlflowLink(version)),
  );
}

function versionTable(versions, sorting, resort) {
  const heading = (column) => {
    if (!column.sort) return el("th", {}, column.heading);
    const active = sorting.sort === column.sort;
    const arrow = active ? (sorting.order === "desc" ? " ▼" : " ▲") : "";
    const next = active && sorting.order === "desc" ? "asc" : "desc";
    return el("th", { "data-sort": column.sort, class: active ? "sortable active" : "sortable" },
      el("button", { type: "button", class: "link", onclick: () => resort({ sort: column.sort, order: next }) },
        `${column.heading}${arrow}`));
  };
  if (versions.length === 0) return el("p", { class: "muted" }, "No versions yet.");
  return el("table", {}, el("thead", {}, el("tr", {}, COLUMNS.map(heading))), el("tbody", {}, versions.map(versionRow)));
}

function movesTable(moves) {
  const rows = moves.map((move) => el("tr", {},
    el("td", {}, `@${move.alias}`), el("td", { class: "num" }, `v${move.version}`),
    el("td", { class: "num" }, move.previous_version ? `v${move.previous_version}` : "—"),
    el("td", {}, move.actor), el("td", {}, when(move.at)),
    el("td", { class: "mono" }, Object.entries(move.figures).map(([k, v]) => `${k}=${number(v, 4)}`).join("  "))));
  return table(["alias", "version", "previous", "by", "when", "figures compared"], rows, "No alias moves yet.");
}

// The plot is fetched with the token (an <img src> cannot send one) and shown from a blob: URL; it is
// fetched again only when the versions' figures change, not on every refresh.
function plotKey(versions) {
  return JSON.stringify(versions.map((v) => [v.version, v.robustness?.clean_acc, v.robustness?.autoattack_acc,
    v.robustness?.pgd_acc]));
}

export function modelPage(view, name) {
  let sorting = { sort: "version", order: "desc" };
  let plot = { key: null, url: null };
  const path = `models/${encodeURIComponent(name)}`;
  const refresh = async () => {
    const query = new URLSearchParams(sorting);
    const model = await call(`${path}?${query}`);
    const key = plotKey(model.versions);
    if (key !== plot.key) {
      const url = await image(`${path}/comparison.png`);
      if (plot.url) URL.revokeObjectURL(plot.url);
      plot = { key, url };
    }
    const resort = (next) => {
      sorting = next;
      refresh().catch((error) => document.dispatchEvent(new CustomEvent("ascl:error", { detail: error })));
    };
    view.replaceChildren(
      el("section", { id: "model", "data-model": model.name },
        el("h2", {}, el("a", { href: "#/models" }, "Models"), " / ", model.name),
        el("dl", { class: "fields" },
          el("dt", {}, "owner"), el("dd", {}, model.owner),
          el("dt", {}, "group"), el("dd", {}, model.group ?? "—"),
          el("dt", {}, "versions"), el("dd", {}, model.total_versions > model.versions.length
            ? `${model.total_versions} (the first ${model.versions.length} as sorted)` : model.total_versions))),
      el("section", { id: "versions" }, el("h2", {}, "Versions"), versionTable(model.versions, sorting, resort)),
      el("section", { id: "comparison" }, el("h2", {}, "Clean against robust accuracy"),
        el("img", { src: plot.url, alt: `clean against robust accuracy of ${model.name}'s versions`, class: "plot" })),
      el("section", { id: "alias-moves" }, el("h2", {}, "Alias moves"), movesTable(model.alias_moves)),
    );
  };
  return { refresh, stop: () => plot.url && URL.revokeObjectURL(plot.url) };
}
