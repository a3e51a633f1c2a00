// The Predict panel's explanation: each feature's contribution to the prediction's log-odds,
// as a diverging bar chart around the baseline (plain divs: one row per feature).

import { $, h } from "./dom.js";

const fmtLogOdds = (value) => `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(3)}`;

/**
 * Show `explanation` ({baseline_log_odds, contributions: {feature: value}}) for `record`
 * (the CDC values, by feature), labelled with `labels`; hide the chart when it is null.
 */
export function renderExplanation(explanation, record, labels, probability) {
  const figure = $("#predict-explanation");
  if (!explanation) {
    figure.hidden = true;
    return;
  }
  const entries = Object.entries(explanation.contributions);
  const largest = Math.max(1e-9, ...entries.map(([, value]) => Math.abs(value)));
  const rows = [];
  for (const [feature, value] of entries) {
    const width = `${(50 * Math.abs(value)) / largest}%`;
    const title = `${feature} = ${record[feature]}: ${fmtLogOdds(value)} log-odds`;
    const bar = h("span", { class: `bar ${value >= 0 ? "up" : "down"}` });
    bar.style.width = width; // through the CSSOM: the page's CSP allows no inline style attribute
    rows.push(
      h("span", { class: "feature", role: "listitem", title, "data-feature": feature }, `${labels[feature] || feature}: ${record[feature]}`),
      h("span", { class: "track", "aria-hidden": "true" }, bar),
      h("span", { class: "value", "data-value": String(value) }, fmtLogOdds(value)),
    );
  }
  $("#explanation-bars").replaceChildren(...rows);
  const total = explanation.baseline_log_odds + entries.reduce((sum, [, value]) => sum + value, 0);
  $("#explanation-caption").textContent =
    `Contributions to the log-odds (exact Shapley values against the training cases): ` +
    `baseline ${explanation.baseline_log_odds.toFixed(3)} (the training cases' mean log-odds) ` +
    `+ contributions = ${total.toFixed(3)} = log(p / (1 − p)) for p = ${probability.toPrecision(4)}. ` +
    `Red raises the odds, green lowers them.`;
  figure.hidden = false;
}
