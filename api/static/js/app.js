// The dashboard: train, follow jobs, compare and promote versions, predict, and watch the
// contrast between a training (seconds, in a worker) and predictions (milliseconds, meanwhile).
//
// This module only starts the page: each panel lives in its own module (readiness, datasets,
// train, jobs, contrast, models, predict), on shared ones (state, format, dom, polling,
// dialogs, and api / charts). Panels that must talk import each other one way only:
// train -> jobs, contrast; jobs -> contrast, models. polling.js says why all of it is polled.

import { apiKey } from "./api.js";
import { renderContrast } from "./contrast.js";
import { loadDatasets, setupDatasets } from "./datasets.js";
import { renderKeyButton, setupKeyDialog } from "./dialogs.js";
import { $ } from "./dom.js";
import { jobsLoop, setupJobs } from "./jobs.js";
import { modelsLoop, renderDetail, setupModels } from "./models.js";
import { hidden, reportConnection } from "./polling.js";
import { loadVocabulary, setupPredict } from "./predict.js";
import { readyLoop } from "./readiness.js";
import { loadTrainDefaults, setupTrain } from "./train.js";

async function start() {
  setupKeyDialog();
  document.addEventListener("apikeychange", () => {
    renderKeyButton();
    if (!apiKey()) return;
    // a new key may open what a 401 closed: reload what the page could not read
    if (!$("#dataset").options.length) loadDatasets().catch(reportConnection);
    jobsLoop.wake();
    modelsLoop.wake();
  });
  setupTrain();
  setupDatasets();
  setupJobs();
  setupPredict();
  setupModels();
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      renderContrast();
      renderDetail();
    }, 100);
  });
  document.addEventListener("visibilitychange", () => {
    if (!hidden()) {
      jobsLoop.wake();
      modelsLoop.wake();
    }
  });

  const setup = [loadVocabulary(), loadDatasets(), loadTrainDefaults()];
  const results = await Promise.allSettled(setup);
  const failure = results.find((r) => r.status === "rejected");
  if (failure) reportConnection(failure.reason);
  renderContrast();
  readyLoop.wake();
  jobsLoop.wake();
  modelsLoop.wake();
  document.body.dataset.ready = "true";
}

start();
