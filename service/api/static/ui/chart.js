// Small inline SVG line charts of a job's per-epoch metrics: no chart library to vendor.

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f5fd0", "#d0582f", "#1b7f3b", "#8a3fd0", "#b08a00", "#00829b"];
const [W, H, LEFT, RIGHT, TOP, BOTTOM] = [340, 170, 44, 10, 22, 22];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// series: [{label, points: [[epoch, value], ...]}]; non-finite values are left out.
export function lineChart(title, series) {
  const clean = series
    .map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }))
    .filter((s) => s.points.length > 0);
  const root = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  root.append(svg("title", {}, title), svg("text", { class: "title", x: LEFT, y: 14 }, title));
  const all = clean.flatMap((s) => s.points);
  if (all.length === 0) return root;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x) => LEFT + ((x - x0) / (x1 - x0)) * (W - LEFT - RIGHT);
  const py = (y) => H - BOTTOM - ((y - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
  root.append(
    svg("line", { x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM, stroke: "#bbb" }),
    svg("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM, stroke: "#bbb" }),
    svg("text", { x: 2, y: TOP + 8 }, y1.toPrecision(3)),
    svg("text", { x: 2, y: H - BOTTOM }, y0.toPrecision(3)),
    svg("text", { x: LEFT, y: H - 6 }, `epoch ${x0}`),
    svg("text", { x: W - RIGHT, y: H - 6, "text-anchor": "end" }, `${x1}`),
  );
  clean.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }));
    for (const [x, y] of s.points) root.append(svg("circle", { cx: px(x), cy: py(y), r: 2.5, fill: colour }));
    const legend = svg("text", { x: W - RIGHT - 110, y: TOP + 10 + 12 * i }, s.label);
    legend.style.fill = colour; // a style beats the stylesheet's colour for chart text, as an attribute would not
    root.append(legend);
  });
  return root;
}

// Charts of GET /jobs/{id}/metrics, one scale each: the training loss, accuracies (training and
// validation), throughput. Other training terms are in the job's MLflow run.
export function epochCharts(epochs) {
  const series = (pick, label) => ({ label, points: epochs.map((e) => [e.epoch + 1, pick(e)]) });
  const keys = (part) => [...new Set(epochs.flatMap((e) => Object.keys(e[part] ?? {})))];
  const accuracies = [
    ...keys("train").filter((k) => k.endsWith("_acc")).map((k) => series((e) => e.train?.[k], `train ${k}`)),
    ...keys("val").map((k) => series((e) => e.val?.[k], `val ${k}`)),
  ];
  return [
    lineChart("training loss", [series((e) => e.train?.loss, "loss")]),
    lineChart("accuracy", accuracies),
    lineChart("images per second", [series((e) => e.images_per_s, "images/s")]),
  ];
}
