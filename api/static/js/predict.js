// The Predict panel: one drop-down per feature (CDC's vocabulary, from GET /vocabulary) and the
// probability the model in production gives for that record.

import { request } from "./api.js";
import { $, h, showError } from "./dom.js";
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
  try {
    const { data, ms } = await request("POST", "/predict", { json: { records: [record] } });
    const prediction = data.predictions[0];
    $("#predict-probability").textContent = `${(prediction.probability * 100).toFixed(1)}%`;
    $("#predict-probability").title = `P(death_yn = Yes) = ${prediction.probability}`;
    const label = $("#predict-label");
    label.textContent = `death_yn: ${prediction.label}`;
    label.className = `badge ${prediction.label === "Yes" ? "status-failed" : "status-succeeded"}`;
    $("#predict-version").textContent = `computed by ${data.model_version} in ${fmtMs(ms)}`;
    const result = $("#predict-result");
    result.dataset.version = data.model_version;
    result.hidden = false;
  } catch (error) {
    $("#predict-result").hidden = true;
    showError(errorBox, error);
  } finally {
    button.disabled = false;
  }
}

export function setupPredict() {
  $("#predict-form").addEventListener("submit", submitPrediction);
}
