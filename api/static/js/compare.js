// Comparing two versions before promoting one (GET /models/{a}/compare/{b}): their held-out
// metrics side by side, each difference (b − a) coloured by which side it favours, and how often
// their predictions disagree over the whole feature space. The models table's "Compare" button
// opens it with the production version as a and the row's version as b: "what would change if
// b served". Any two versions can be picked from there. A comparison never changes (versions are
// immutable), so nothing here is polled.

import { request } from "./api.js";
import { $, h, showError } from "./dom.js";
import { fmtInt, fmtMetric, fmtPct, fmtSeconds } from "./format.js";
import { state } from "./state.js";

const METRIC_LABELS = {
  roc_auc: "ROC AUC",
  accuracy: "Accuracy",
  balanced_accuracy: "Balanced accuracy",
  precision: "Precision",
  recall: "Recall",
  f1: "F1",
  log_loss: "Log loss (less is better)",
  brier: "Brier score (less is better)",
};
const RATES = new Set(["positive_rate", "observed_rate", "mean_probability"]);
const ESTIMATORS = { logistic_regression: "logistic regression", hist_gradient_boosting: "gradient boosting" };

let shown = null; // the comparison on screen
let asked = 0; // answers to older requests are dropped

const signed = (value, format) => (value > 0 ? "+" : value < 0 ? "−" : "±") + format(Math.abs(value));

/** The b − a cell: green when the difference favours b (the candidate), red when it favours a. */
function deltaCell(delta, format) {
  if (!delta || typeof delta.difference !== "number") return h("td", { class: "num delta" }, "—");
  const tone = { b: "delta-better", a: "delta-worse", same: "delta-same" }[delta.better] || "delta-neutral";
  const why = { b: "b is better", a: "a is better", same: "no difference" }[delta.better] || "neither better nor worse";
  return h("td", { class: `num delta ${tone}`, title: why, "data-better": delta.better || "none" }, signed(delta.difference, format));
}

function versionOptions(select, chosen) {
  select.replaceChildren(
    ...state.versions.map((v) =>
      h("option", { value: v.version, selected: v.version === chosen }, `${v.version}${v.version === state.production ? " (production)" : ""}`),
    ),
  );
  select.value = chosen;
}

/** Open the panel comparing `version` (b) with production (a), or with another version when it
 *  is production itself. The models table calls this from each row. */
export function openComparison(version) {
  setup();
  const other = state.versions.find((v) => v.version !== version);
  const a = state.production && state.production !== version ? state.production : other ? other.version : version;
  versionOptions($("#compare-a"), a);
  versionOptions($("#compare-b"), version);
  $("#compare").hidden = false;
  $("#compare").scrollIntoView({ block: "nearest" });
  return compare();
}

/** The models table's hook: a row's "Compare" button. */
export function compareButton(version) {
  return h("button", {
    type: "button",
    class: "small",
    "aria-label": `Compare ${version} with production`,
    "data-focus": `compare-${version}`,
    onclick: () => openComparison(version),
    text: "Compare",
  });
}

async function compare() {
  const a = $("#compare-a").value;
  const b = $("#compare-b").value;
  const errorBox = $("#compare-error");
  showError(errorBox, null);
  const ticket = (asked += 1);
  $("#compare").setAttribute("aria-busy", "true");
  try {
    const { data } = await request("GET", `/models/${encodeURIComponent(a)}/compare/${encodeURIComponent(b)}`);
    if (ticket !== asked) return;
    shown = data;
    render();
  } catch (error) {
    if (ticket === asked) showError(errorBox, error);
  } finally {
    if (ticket === asked) $("#compare").removeAttribute("aria-busy");
  }
}

function describe(side) {
  const estimator = ESTIMATORS[side.estimator] || side.estimator || "logistic regression";
  const dataset = side.dataset && side.dataset.name ? side.dataset.name : "?";
  return `${side.version}: ${estimator} on ${dataset}`;
}

function render() {
  const data = shown;
  if (!data) return;
  const box = $("#compare-result");
  box.hidden = false;
  box.dataset.a = data.a.version;
  box.dataset.b = data.b.version;
  $("#compare-summary").textContent = [
    `a = ${describe(data.a)}`,
    `b = ${describe(data.b)}`,
    "differences are b − a; green favours b, red favours a",
  ].join(" · ");
  const caveat = $("#compare-caveat");
  caveat.hidden = data.same_test_rows;
  caveat.textContent = data.same_test_rows ? "" : "The two were evaluated on different held-out rows (another file or split): their metrics' differences are also the data's.";

  const d = data.disagreement;
  $("#c-combinations").textContent = `${fmtInt(d.combinations)} of ${fmtInt(d.total)} (${fmtPct(d.share, 2)})`;
  $("#c-mass-a").textContent = d.mass_under_a === null ? "— (no distribution saved)" : fmtPct(d.mass_under_a, 2);
  $("#c-mass-b").textContent = d.mass_under_b === null ? "— (no distribution saved)" : fmtPct(d.mass_under_b, 2);
  $("#c-largest").textContent = d.largest_at
    ? `${fmtMetric(d.largest_difference)} (${fmtPct(d.probability_a)} → ${fmtPct(d.probability_b)})`
    : "none: they agree everywhere";
  $("#c-largest-at").textContent = d.largest_at ? Object.values(d.largest_at).join(" · ") : "—";
  $("#c-seconds").textContent = `${fmtSeconds(d.seconds)}${data.cached ? " (cached)" : ""}`;

  $("#compare-metrics tbody").replaceChildren(
    ...Object.entries(data.metrics).map(([name, delta]) =>
      h(
        "tr",
        { "data-metric": name },
        h("th", { scope: "row" }, METRIC_LABELS[name] || name),
        h("td", { class: "num" }, fmtMetric(delta.a)),
        h("td", { class: "num" }, fmtMetric(delta.b)),
        deltaCell(delta, (v) => v.toFixed(3)),
      ),
    ),
  );
  renderGroups();
}

function renderGroups() {
  const data = shown;
  if (!data) return;
  const column = $("#compare-group-column").value;
  const metric = $("#compare-group-metric").value;
  const format = RATES.has(metric) ? (v) => fmtPct(v) : fmtMetric;
  const groups = (data.group_metrics && data.group_metrics[column]) || {};
  $("#compare-groups tbody").replaceChildren(
    ...Object.entries(groups).map(([value, deltas]) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, value),
        h("td", { class: "num" }, `${fmtInt(deltas.rows && deltas.rows.a)} / ${fmtInt(deltas.rows && deltas.rows.b)}`),
        h("td", { class: "num" }, format(deltas[metric] && deltas[metric].a)),
        h("td", { class: "num" }, format(deltas[metric] && deltas[metric].b)),
        deltaCell(deltas[metric], RATES.has(metric) ? (v) => `${(v * 100).toFixed(1)} pp` : (v) => v.toFixed(3)),
      ),
    ),
  );
}

let listening = false;

/** The panel's own controls, wired on first use (app.js need not know this panel). */
function setup() {
  if (listening) return;
  listening = true;
  $("#compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    compare();
  });
  $("#compare-swap").addEventListener("click", () => {
    const a = $("#compare-a").value;
    $("#compare-a").value = $("#compare-b").value;
    $("#compare-b").value = a;
    compare();
  });
  $("#compare-close").addEventListener("click", () => {
    $("#compare").hidden = true;
  });
  $("#compare-group-column").addEventListener("change", renderGroups);
  $("#compare-group-metric").addEventListener("change", renderGroups);
}
