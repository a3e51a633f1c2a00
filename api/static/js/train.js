// The Train panel's form: its defaults (from the API's own schema), its checks, and the submit,
// which starts a contrast measurement and then follows the new job.

import { randomId, request } from "./api.js";
import { renderContrast, runAccepted, runRefused, startRun } from "./contrast.js";
import { $, showError } from "./dom.js";
import { followSubmitted } from "./jobs.js";

export async function loadTrainDefaults() {
  // The defaults come from the API's own schema, so the form never drifts from the server.
  let params = {};
  let boosting = {};
  let body = {};
  try {
    const { data } = await request("GET", "/openapi.json", { interactive: false });
    params = data.components.schemas.TrainParams.properties;
    boosting = data.components.schemas.BoostingTrainParams.properties;
    body = data.components.schemas.TrainRequest.properties;
  } catch {
    /* keep the fallbacks below */
  }
  const pick = (props, name, fallback) => (props[name] && props[name].default !== undefined ? props[name].default : fallback);
  $("#param-estimator").value = pick(body, "estimator", "logistic_regression");
  $("#param-C").value = pick(params, "C", 1.0);
  $("#param-class-weight").value = pick(params, "class_weight", null) || "";
  $("#param-max-iter").value = pick(params, "max_iter", 1000);
  $("#param-learning-rate").value = pick(boosting, "learning_rate", 0.1);
  $("#param-hgb-max-iter").value = pick(boosting, "max_iter", 100);
  $("#param-max-leaf-nodes").value = pick(boosting, "max_leaf_nodes", 31);
  $("#param-max-depth").value = pick(boosting, "max_depth", null) ?? "";
  $("#param-l2").value = pick(boosting, "l2_regularization", 0);
  $("#param-hgb-class-weight").value = pick(boosting, "class_weight", null) || "";
  showEstimatorParams();
  $("#param-test-size").value = pick(body, "test_size", 0.2);
  $("#param-random-state").value = pick(body, "random_state", 42);
  $("#param-promote").checked = pick(body, "promote", true) !== false;
}

/** Show the chosen estimator's parameters; the other group is disabled (not checked, not sent). */
function showEstimatorParams() {
  const chosen = $("#param-estimator").value;
  for (const group of document.querySelectorAll("#train-form fieldset[data-estimator]")) {
    const mine = group.dataset.estimator === chosen;
    group.hidden = !mine;
    group.disabled = !mine;
  }
}

function estimatorParams(estimator) {
  if (estimator === "hist_gradient_boosting") {
    const params = {
      learning_rate: Number($("#param-learning-rate").value),
      max_iter: Number.parseInt($("#param-hgb-max-iter").value, 10),
      max_leaf_nodes: Number.parseInt($("#param-max-leaf-nodes").value, 10),
      l2_regularization: Number($("#param-l2").value),
      class_weight: $("#param-hgb-class-weight").value || null,
    };
    const depth = $("#param-max-depth").value;
    params.max_depth = depth === "" ? null : Number.parseInt(depth, 10);
    return params;
  }
  return {
    C: Number($("#param-C").value),
    class_weight: $("#param-class-weight").value || null,
    max_iter: Number.parseInt($("#param-max-iter").value, 10),
  };
}

function trainBody() {
  const form = $("#train-form");
  const C = $("#param-C");
  C.setCustomValidity(Number(C.value) > 0 ? "" : "C must be greater than 0");
  const rate = $("#param-learning-rate");
  rate.setCustomValidity(Number(rate.value) > 0 && Number(rate.value) <= 1 ? "" : "learning_rate must be greater than 0 and at most 1");
  const testSize = $("#param-test-size");
  const ts = testSize.value === "" ? null : Number(testSize.value);
  testSize.setCustomValidity(ts === null || (ts > 0 && ts < 1) ? "" : "test_size must be between 0 and 1 (exclusive)");
  if (!form.checkValidity()) {
    const firstBad = form.querySelector(":invalid");
    if (firstBad && firstBad.closest("details")) firstBad.closest("details").open = true;
    form.reportValidity();
    return null;
  }
  const estimator = $("#param-estimator").value;
  const body = {
    dataset: $("#dataset").value,
    estimator,
    params: estimatorParams(estimator),
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
  $("#param-estimator").addEventListener("change", showEstimatorParams);
}
