// The Predict panel: one drop-down per feature (CDC's vocabulary, from GET /vocabulary) and the
// probability the model in production gives for that record, with each feature's contribution
// when "Explain" is ticked (explain.js draws them).

import { ApiError, request } from "./api.js";
import { $, h, showError } from "./dom.js";
import { renderExplanation } from "./explain.js";
import { fmtMs } from "./format.js";
import { state } from "./state.js";

const FIELD_LABELS = {
  current_status: "Current status",
  sex: "Sex",
  age_group: "Age group",
  race_ethnicity_combined: "Race and ethnicity",
  hosp_yn: "Hospitalised",
  icu_yn: "Admitted to ICU",
  medcond_yn: "Underlying medical conditions",
};

/** Fetch the vocabulary and build the form's fields from it. */
export async function loadVocabulary() {
  const { data } = await request("GET", "/vocabulary", { interactive: false });
  state.vocabulary = data;
  buildPredictForm(data);
}

function buildPredictForm(vocabulary) {
  const box = $("#predict-fields");
  box.replaceChildren(
    ...vocabulary.columns.map((column) => {
      const required = vocabulary.required.includes(column);
      const select = h("select", { id: `predict-${column}`, name: column, required });
      if (required) select.append(h("option", { value: "", text: "Choose…" }));
      for (const value of vocabulary.values[column]) select.append(h("option", { value, text: value }));
      if (!required) select.value = vocabulary.missing;
      const label = h("label", { for: `predict-${column}` }, FIELD_LABELS[column] || column, required ? h("span", { class: "required", text: " (required)" }) : null);
      return h("div", { class: "field" }, label, select);
    }),
  );
}

async function submitPrediction(event) {
  event.preventDefault();
  const form = $("#predict-form");
  const errorBox = $("#predict-error");
  showError(errorBox, null);
  if (!form.checkValidity()) {
    form.reportValidity();
    return;
  }
  const record = {};
  for (const column of state.vocabulary.columns) record[column] = $(`#predict-${column}`).value;
  const button = $("#predict-submit");
  button.disabled = true;
  let note = "";
  try {
    const explain = $("#predict-explain").checked;
    let answer;
    try {
      answer = await request("POST", "/predict", { json: { records: [record], explain } });
    } catch (error) {
      // A version saved before explanations existed still predicts: ask again without.
      if (!(explain && error instanceof ApiError && error.code === "explanation_unavailable")) throw error;
      note = ` (no explanation: ${error.message})`;
      answer = await request("POST", "/predict", { json: { records: [record] } });
    }
    const { data, ms } = answer;
    const prediction = data.predictions[0];
    $("#predict-probability").textContent = `${(prediction.probability * 100).toFixed(1)}%`;
    $("#predict-probability").title = `P(death_yn = Yes) = ${prediction.probability}`;
    const label = $("#predict-label");
    label.textContent = `death_yn: ${prediction.label}`;
    label.className = `badge ${prediction.label === "Yes" ? "status-failed" : "status-succeeded"}`;
    $("#predict-version").textContent = `computed by ${data.model_version} in ${fmtMs(ms)}${note}`;
    renderExplanation(prediction.explanation || null, record, FIELD_LABELS, prediction.probability);
    const result = $("#predict-result");
    result.dataset.version = data.model_version;
    result.hidden = false;
  } catch (error) {
    $("#predict-result").hidden = true;
    renderExplanation(null);
    showError(errorBox, error);
  } finally {
    button.disabled = false;
  }
}

export function setupPredict() {
  $("#predict-form").addEventListener("submit", submitPrediction);
}
