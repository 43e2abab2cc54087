// The "Model" tab: the served checkpoint (from /v1/info) and its eval report
// (GET /v1/model/report): per-class accuracy, worst first, and the confusion matrix.
import { api } from "./api.js";
import { $, headerRow, renderRows } from "./dom.js";

let page; // main.js's shared state: page.info is the server's /v1/info

export function setup(shared) {
  page = shared;
}

export async function open() {
  const m = page.info.model;
  if (!m) {
    renderRows($("model-info"), [["model", "none yet: add takes and train (the Teach tab)"]]);
    $("report-message").textContent = "";
    $("per-class").textContent = "";
    $("confusion").textContent = "";
    return;
  }
  renderRows($("model-info"), [
    ["fusion", m.fusion], ["modalities", String(m.modalities)],
    ["parameters", m.parameters.toLocaleString()], ["classes", m.num_classes],
    ["frames (T)", m.num_frames], ["encoder", m.encoder && m.encoder.model_id],
    ...Object.entries(m.metrics || {}).map(([k, v]) => [k, typeof v === "number" ? v.toFixed(4) : JSON.stringify(v)]),
  ]);
  let report;
  try {
    report = await api("/v1/model/report");
  } catch (err) {
    $("report-message").textContent = err.status === 404 ? `No eval report: ${err.message}.` : err.message;
    return;
  }
  $("report-message").textContent = `${report.split} split: ${report.count} videos, top-1 ${(100 * report.top1).toFixed(1)}%, top-5 ${(100 * report.top5).toFixed(1)}% (${report.path})`;
  renderPerClass($("per-class"), report.per_class);
  const names = Object.keys(report.labels || {}).sort((a, b) => a - b).map((k) => report.labels[k]);
  renderConfusion($("confusion"), names, report.confusion);
}

// Per-class accuracy ({gloss: {accuracy, count}}), worst first.
export function renderPerClass(table, perClass) {
  renderRows(table, Object.entries(perClass || {})
    .sort((a, b) => a[1].accuracy - b[1].accuracy)
    .map(([name, c]) => [name, `${(100 * c.accuracy).toFixed(1)}%`, `${c.count} videos`]));
}

// A confusion matrix (rows: true, columns: predicted), each cell shaded by its share of
// the row: green on the diagonal, red off it.
export function renderConfusion(table, names, confusion) {
  table.textContent = "";
  headerRow(table, names);
  (confusion || []).forEach((row, i) => {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = names[i] || i;
    tr.appendChild(th);
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((n, j) => {
      const td = tr.insertCell();
      td.textContent = n || "";
      const alpha = n / total;
      td.style.background = `rgba(${i === j ? "22,163,74" : "220,38,38"},${alpha.toFixed(2)})`;
    });
  });
}
