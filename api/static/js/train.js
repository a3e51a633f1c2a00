// The Train panel's form: its defaults (from the API's own schema), its checks, and the submit,
// which starts a contrast measurement and then follows the new job.

import { randomId, request } from "./api.js";
import { renderContrast, runAccepted, runRefused, startRun } from "./contrast.js";
import { $, showError } from "./dom.js";
import { followSubmitted } from "./jobs.js";

export async function loadTrainDefaults() {
  // The defaults come from the API's own schema, so the form never drifts from the server.
  let params = {};
  let body = {};
  try {
    const { data } = await request("GET", "/openapi.json", { interactive: false });
    params = data.components.schemas.TrainParams.properties;
    body = data.components.schemas.TrainRequest.properties;
  } catch {
    /* keep the fallbacks below */
  }
  const pick = (props, name, fallback) => (props[name] && props[name].default !== undefined ? props[name].default : fallback);
  $("#param-C").value = pick(params, "C", 1.0);
  $("#param-class-weight").value = pick(params, "class_weight", null) || "";
  $("#param-max-iter").value = pick(params, "max_iter", 1000);
  $("#param-test-size").value = pick(body, "test_size", 0.2);
  $("#param-random-state").value = pick(body, "random_state", 42);
  $("#param-promote").checked = pick(body, "promote", true) !== false;
}

function trainBody() {
  const form = $("#train-form");
  const C = $("#param-C");
  C.setCustomValidity(Number(C.value) > 0 ? "" : "C must be greater than 0");
  const testSize = $("#param-test-size");
  const ts = testSize.value === "" ? null : Number(testSize.value);
  testSize.setCustomValidity(ts === null || (ts > 0 && ts < 1) ? "" : "test_size must be between 0 and 1 (exclusive)");
  if (!form.checkValidity()) {
    const firstBad = form.querySelector(":invalid");
    if (firstBad && firstBad.closest("details")) firstBad.closest("details").open = true;
    form.reportValidity();
    return null;
  }
  const body = {
    dataset: $("#dataset").value,
    params: {
      C: Number(C.value),
      class_weight: $("#param-class-weight").value || null,
      max_iter: Number.parseInt($("#param-max-iter").value, 10),
    },
    promote: $("#param-promote").checked,
  };
  if (ts !== null) body.test_size = ts;
  const rs = $("#param-random-state").value;
  if (rs !== "") body.random_state = Number.parseInt(rs, 10);
  const gate = $("#param-min-roc-auc").value;
  if (gate !== "") body.min_roc_auc = Number(gate);
  return body;
}

async function submitTraining(event) {
  event.preventDefault();
  const errorBox = $("#train-error");
  showError(errorBox, null);
  const body = trainBody();
  if (!body) return;
  const button = $("#train-submit");
  button.disabled = true;
  const run = startRun(body.dataset);
  try {
    // One key per click: a retry after a 401 prompt cannot start the training twice.
    const { data, ms } = await request("POST", "/train", { json: body, headers: { "Idempotency-Key": randomId() } });
    runAccepted(run, data.job_id, ms);
    followSubmitted(data.job_id, data.status, body.dataset);
  } catch (error) {
    runRefused(run, error);
    showError(errorBox, error);
  } finally {
    button.disabled = false;
    renderContrast();
  }
}

export function setupTrain() {
  $("#train-form").addEventListener("submit", submitTraining);
}
