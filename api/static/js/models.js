// The models: every version with its metrics and quality gate, promoting one (with a forced
// second try when its gate failed) or rolling back, and one version's metrics per group. The
// table shows one page of GET /models at a time (newest first, the API's page size), and a
// version that neither serves nor is in the rollback history can be deleted.

import { ApiError, request } from "./api.js";
import { drawBars } from "./charts.js";
import { compareButton } from "./compare.js";
import { confirmDialog } from "./dialogs.js";
import { $, h, keepingFocus, showError } from "./dom.js";
import { fmtDateTime, fmtInt, fmtMetric, fmtPct, fmtSeconds } from "./format.js";
import { Loop, connectionOk, hidden } from "./polling.js";
import { HIDDEN_MS, MODELS_MS, state } from "./state.js";

let modelsSignature = "";
// Paging: the cursor of the page shown (null: the newest), those of the pages before it, and
// the next page's (null: this is the last).
const paging = { cursor: null, previous: [], next: null, total: 0, shown: 0 };

async function pollModels() {
  const query = paging.cursor ? `?cursor=${encodeURIComponent(paging.cursor)}` : "";
  const { data } = await request("GET", `/models${query}`, { interactive: false });
  connectionOk();
  if (paging.cursor && !data.versions.length && data.total) {
    // everything past the cursor was deleted: back to the newest page
    Object.assign(paging, { cursor: null, previous: [] });
    return pollModels();
  }
  const signature = JSON.stringify(data);
  if (signature === modelsSignature) return;
  modelsSignature = signature;
  state.production = data.production;
  state.history = data.history || [];
  state.versions = data.versions;
  Object.assign(paging, { next: data.next_cursor, total: data.total });
  $("#production").textContent = data.production || "none";
  renderModels();
  renderPager();
  if (!state.selected && data.versions.length) await selectVersion(data.production || data.versions[0].version);
}

export const modelsLoop = new Loop(pollModels, () => (hidden() ? HIDDEN_MS : MODELS_MS));

function gateCell(gate) {
  if (!gate) return h("span", { class: "note", text: "—" });
  if (gate.passed) return h("span", { class: "badge status-succeeded", text: "passed" });
  return h("span", { class: "gate-failed" }, h("span", { class: "badge status-failed", text: "failed" }), h("span", { class: "note", text: ` ${(gate.reasons || []).join("; ")}` }));
}

function renderModels() {
  const tbody = $("#models-table tbody");
  keepingFocus(tbody, () => {
    const rows = state.versions.map((v) => {
      const metrics = v.metrics || {};
      const counts = v.rows || {};
      const isProduction = v.version === state.production;
      return h(
        "tr",
        { "data-version": v.version, class: [isProduction ? "production" : "", v.version === state.selected ? "selected" : ""].join(" ").trim() || null },
        h(
          "th",
          { scope: "row" },
          h("span", { class: "version", text: v.version }),
          isProduction ? h("span", { class: "badge production-badge", text: "production" }) : null,
          h("span", { class: "note estimator-note", text: v.estimator === "hist_gradient_boosting" ? "gradient boosting" : "logistic regression" }),
        ),
        h("td", { "data-label": "Created", title: v.created_at || "" }, fmtDateTime(v.created_at)),
        h("td", { "data-label": "Dataset", class: "dataset-cell", title: v.dataset && v.dataset.name ? v.dataset.name : "" }, v.dataset && v.dataset.name ? v.dataset.name : "—"),
        h("td", { "data-label": "Train / test rows", class: "num" }, `${fmtInt(counts.train)} / ${fmtInt(counts.test)}`),
        h("td", { "data-label": "ROC AUC", class: "num" }, fmtMetric(metrics.roc_auc)),
        h("td", { "data-label": "Accuracy", class: "num" }, fmtMetric(metrics.accuracy)),
        h("td", { "data-label": "Bal. acc.", class: "num" }, fmtMetric(metrics.balanced_accuracy)),
        h("td", { "data-label": "Recall", class: "num" }, fmtMetric(metrics.recall)),
        h("td", { "data-label": "F1", class: "num" }, fmtMetric(metrics.f1)),
        h("td", { "data-label": "Gate", class: "col-gate" }, gateCell(v.gate)),
        h(
          "td",
          { class: "row-actions" },
          h("button", {
            type: "button",
            class: "small",
            "aria-pressed": v.version === state.selected ? "true" : "false",
            "aria-label": `Details of ${v.version}`,
            "data-focus": `details-${v.version}`,
            onclick: () => selectVersion(v.version),
            text: "Details",
          }),
          h("button", {
            type: "button",
            class: "small",
            disabled: isProduction,
            "aria-label": `Promote ${v.version}`,
            "data-focus": `promote-${v.version}`,
            onclick: () => promote(v.version),
            text: "Promote",
          }),
          compareButton(v.version),
          deleteButton(v, isProduction),
        ),
      );
    });
    tbody.replaceChildren(...rows);
  });
  $("#models-empty").hidden = state.versions.length > 0;
  $("#models-table").hidden = state.versions.length === 0;
}

/** Why a version cannot be deleted, or null when it can. */
function keptBecause(v, isProduction) {
  if (isProduction) return `${v.version} serves predictions: promote another version first`;
  if ((state.history || []).includes(v.version)) return `${v.version} is in the rollback history: roll back past it or promote another version first`;
  return null;
}

function deleteButton(v, isProduction) {
  const why = keptBecause(v, isProduction);
  return h("button", {
    type: "button",
    class: "small",
    disabled: Boolean(why),
    title: why || `Delete ${v.version} for good`,
    "aria-label": `Delete ${v.version}`,
    "data-focus": `delete-${v.version}`,
    onclick: () => removeVersion(v.version),
    text: "Delete",
  });
}

async function removeVersion(version) {
  const errorBox = $("#models-error");
  showError(errorBox, null);
  const ok = await confirmDialog({
    title: `Delete ${version}?`,
    body: `${version} is removed from the registry with its model file: it cannot be promoted again, and its number is not reused.`,
    ok: `Delete ${version}`,
    danger: true,
  });
  if (!ok) return;
  try {
    await request("DELETE", `/models/${encodeURIComponent(version)}`);
  } catch (error) {
    showError(errorBox, error);
    return;
  }
  if (state.selected === version) {
    state.selected = null;
    state.detail = null;
    $("#model-detail").hidden = true;
  }
  modelsLoop.wake();
}

function renderPager() {
  const first = paging.previous.length === 0;
  $("#models-pager").hidden = first && !paging.next;
  $("#models-newer").disabled = first;
  $("#models-older").disabled = !paging.next;
  const from = state.versions.length ? state.versions[0].version : "—";
  const to = state.versions.length ? state.versions[state.versions.length - 1].version : "—";
  $("#models-page-note").textContent = `${from} to ${to}, of ${fmtInt(paging.total)} versions`;
}

function turnPage(older) {
  if (older) {
    if (!paging.next) return;
    paging.previous.push(paging.cursor);
    paging.cursor = paging.next;
  } else {
    if (!paging.previous.length) return;
    paging.cursor = paging.previous.pop();
  }
  modelsLoop.wake();
}

async function promote(version) {
  const errorBox = $("#models-error");
  showError(errorBox, null);
  const summary = state.versions.find((v) => v.version === version);
  const auc = summary && summary.metrics ? fmtMetric(summary.metrics.roc_auc) : "—";
  const ok = await confirmDialog({
    title: `Promote ${version}?`,
    body: `${version} (ROC AUC ${auc}) will answer predictions instead of ${state.production || "no model"}; the prediction workers pick the change up within a moment.`,
    ok: `Promote ${version}`,
  });
  if (!ok) return;
  try {
    await request("POST", `/models/${encodeURIComponent(version)}/promote`, { json: { force: false } });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409 && error.code === "gate_failed")) {
      showError(errorBox, error);
      return;
    }
    const gate = (error.details && error.details.gate) || (summary && summary.gate) || {};
    const reasons = (gate.reasons || []).join("; ");
    const force = await confirmDialog({
      title: `${version} failed its quality gate`,
      body: `The API refused: ${error.message}${reasons ? ` (${reasons})` : ""}. Promote it anyway? This sends {"force": true}.`,
      ok: "Promote anyway (force)",
      danger: true,
    });
    if (!force) return;
    try {
      await request("POST", `/models/${encodeURIComponent(version)}/promote`, { json: { force: true } });
    } catch (forced) {
      showError(errorBox, forced);
      return;
    }
  }
  modelsLoop.wake();
}

async function rollback() {
  const errorBox = $("#models-error");
  showError(errorBox, null);
  const ok = await confirmDialog({
    title: "Roll back production?",
    body: `The version that served before ${state.production || "the current one"} serves again.`,
    ok: "Roll back",
  });
  if (!ok) return;
  try {
    await request("POST", "/models/rollback");
  } catch (error) {
    showError(errorBox, error);
    return;
  }
  modelsLoop.wake();
}

async function selectVersion(version) {
  state.selected = version;
  renderModels();
  const box = $("#model-detail");
  try {
    const { data } = await request("GET", `/models/${encodeURIComponent(version)}`, { interactive: false });
    if (state.selected !== version) return;
    state.detail = data;
    box.hidden = false;
    renderDetail();
  } catch (error) {
    showError($("#models-error"), error);
  }
}

export function renderDetail() {
  const meta = state.detail;
  if (!meta) return;
  $("#model-detail-title").textContent = `${meta.version}: metrics per group`;
  const rows = meta.rows || {};
  const params = meta.params || {};
  const gate = meta.gate || {};
  const parts = [
    `Trained ${fmtDateTime(meta.created_at)} on ${(meta.dataset && meta.dataset.name) || "?"}`,
    `${fmtInt(rows.train)} train / ${fmtInt(rows.test)} test rows`,
    `${meta.estimator || "logistic_regression"}: ${Object.entries(params)
      .filter(([name]) => name !== "tol")
      .map(([name, value]) => `${name}=${value ?? "none"}`)
      .join(", ")}`,
    typeof meta.training_seconds === "number" ? `trained in ${fmtSeconds(meta.training_seconds)}` : null,
    gate.passed === undefined ? null : gate.passed ? "gate passed" : `gate failed: ${(gate.reasons || []).join("; ")}`,
  ];
  $("#model-detail-summary").textContent = parts.filter(Boolean).join(" · ");
  const column = $("#group-column").value;
  const metric = $("#group-metric").value;
  const groups = (meta.group_metrics && meta.group_metrics[column]) || {};
  const entries = Object.entries(groups);
  const metricLabel = $("#group-metric").selectedOptions[0].textContent;
  const tbody = $("#group-table tbody");
  tbody.replaceChildren(
    ...entries.map(([value, g]) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, value),
        h("td", { class: "num" }, fmtInt(g.rows)),
        h("td", { class: "num" }, fmtInt(g.positives)),
        h("td", { class: "num" }, fmtPct(g.observed_rate)),
        h("td", { class: "num" }, fmtPct(g.mean_probability)),
        h("td", { class: "num" }, fmtPct(g.positive_rate)),
        h("td", { class: "num", title: (g.undefined && g.undefined.recall) || "" }, fmtMetric(g.recall)),
        h("td", { class: "num", title: (g.undefined && g.undefined.precision) || "" }, fmtMetric(g.precision)),
        h("td", { class: "num" }, fmtMetric(g.accuracy)),
        h("td", { class: "num", title: (g.undefined && g.undefined.roc_auc) || "" }, fmtMetric(g.roc_auc)),
      ),
    ),
  );
  const isRate = ["positive_rate", "observed_rate", "mean_probability"].includes(metric);
  drawBars(
    $("#group-chart"),
    entries.map(([value, g]) => ({
      label: value,
      value: typeof g[metric] === "number" ? g[metric] : null,
      note: g.undefined && g.undefined[metric] ? g.undefined[metric] : `${fmtInt(g.rows)} test rows`,
    })),
    { format: isRate ? (v) => fmtPct(v) : (v) => v.toFixed(3) },
  );
  $("#group-caption").textContent = `${metricLabel} of ${meta.version}, per ${column} (held-out rows).`;
}

export function setupModels() {
  $("#rollback-button").addEventListener("click", rollback);
  $("#models-older").addEventListener("click", () => turnPage(true));
  $("#models-newer").addEventListener("click", () => turnPage(false));
  $("#group-column").addEventListener("change", renderDetail);
  $("#group-metric").addEventListener("change", renderDetail);
}
