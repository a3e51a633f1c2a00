// The dashboard: train, follow jobs, compare and promote versions, predict, and watch the
// contrast between a training (seconds, in a worker) and predictions (milliseconds, meanwhile).
//
// Everything is polled with setTimeout chains, one request in flight per loop, so the rate is
// bounded whatever the server's speed: the job being followed 4 times a second while it runs,
// the job list every second while anything runs (every 3 s when idle), models every 5 s,
// readiness every 10 s; all of them slower while the tab is hidden. See the README ("Dashboard")
// for why this is polling and not server-sent events.

import { ApiError, apiKey, onKeyNeeded, randomId, request, setApiKey } from "./api.js";
import { drawBars, drawLatency, versionHue } from "./charts.js";

const JOB_ACTIVE_MS = 250;
const LIST_ACTIVE_MS = 1000;
const LIST_IDLE_MS = 3000;
const MODELS_MS = 5000;
const READY_MS = 10000;
const HIDDEN_MS = 15000;
const SAMPLE_MS = 300;
const AFTER_FINISH_S = 2; // keep sampling this long after the job ended, to show the swap
const MAX_AFTER_FINISH_S = 10;
const MAX_SAMPLES = 4000;
const JOBS_SHOWN = 10;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

const STAGES = {
  reading: "reading the CSV",
  fitting: "fitting",
  evaluating: "evaluating",
  evaluated: "evaluated",
  saving: "saving the version",
  done: "done",
};
const FIELD_LABELS = {
  current_status: "Current status",
  sex: "Sex",
  age_group: "Age group",
  race_ethnicity_combined: "Race and ethnicity",
  hosp_yn: "Hospitalised",
  icu_yn: "Admitted to ICU",
  medcond_yn: "Underlying medical conditions",
};
// The record the contrast panel scores every few hundred milliseconds.
const SAMPLE_RECORD = {
  current_status: "Laboratory-confirmed case",
  sex: "Female",
  age_group: "70 - 79 Years",
  race_ethnicity_combined: "White, Non-Hispanic",
  hosp_yn: "Yes",
  icu_yn: "No",
  medcond_yn: "Yes",
};

const state = {
  jobs: new Map(), // job_id -> the job as last seen
  submitted: new Map(), // job_id -> {dataset}, for jobs submitted from this page
  current: null, // the job followed in the Train panel
  cancelling: new Set(),
  production: null,
  versions: [],
  selected: null, // version whose details are shown
  detail: null, // its metadata
  run: null, // the contrast measurement
  vocabulary: null,
};

// --- small helpers ---------------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = "";
  if (error instanceof ApiError) {
    node.append(h("strong", { text: `${error.code}: ` }), error.message);
    // validation errors list their fields; other details repeat the message in JSON
    const details = Array.isArray(error.details) ? describeDetails(error.details) : "";
    if (details) node.append(h("span", { class: "details", text: details }));
    if (error.requestId) node.append(h("span", { class: "request-id", text: `request ${error.requestId}` }));
  } else {
    node.textContent = String(error && error.message ? error.message : error);
  }
}

function describeDetails(details) {
  return details
    .map((d) => (d && typeof d === "object" && d.field ? `${d.field}: ${d.message}` : JSON.stringify(d)))
    .join("; ");
}

const integer = new Intl.NumberFormat("en-US");
const fmtInt = (n) => (typeof n === "number" ? integer.format(n) : "—");
const fmtPct = (p, digits = 1) => (typeof p === "number" ? `${(p * 100).toFixed(digits)}%` : "—");
const fmtMetric = (v) => (typeof v === "number" ? v.toFixed(3) : "—");
const fmtMs = (ms) => (ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);

function fmtSeconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "—";
  if (s < 60) return `${s.toFixed(2)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

function fmtDateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return `${date.toLocaleDateString("en-CA")} ${date.toLocaleTimeString("en-GB", { hour12: false })}`;
}

function secondsBetween(a, b) {
  if (!a || !b) return null;
  const s = (new Date(b).getTime() - new Date(a).getTime()) / 1000;
  return Number.isFinite(s) ? s : null;
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

const shortId = (id) => String(id).slice(0, 8);

/** Re-render inside `container` without losing keyboard focus (buttons carry data-focus). */
function keepingFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : null;
  render();
  if (key) {
    const again = container.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus();
  }
}

// --- polling loops ---------------------------------------------------------------------------

class Loop {
  /** `delay(elapsedMs)` returns the pause before the next tick, or null to stop until woken. */
  constructor(tick, delay) {
    this.tick = tick;
    this.delay = delay;
    this.timer = null;
    this.busy = false;
    this.again = false;
  }

  wake() {
    if (this.busy) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.run();
  }

  async run() {
    this.busy = true;
    const started = performance.now();
    try {
      await this.tick();
    } catch (error) {
      reportConnection(error);
    }
    this.busy = false;
    const pause = this.again ? 0 : this.delay(performance.now() - started);
    this.again = false;
    if (pause !== null) this.timer = setTimeout(() => this.run(), pause);
  }
}

const hidden = () => document.visibilityState === "hidden";
const anyActive = () => [...state.jobs.values()].some((job) => !FINAL.has(job.status));

function reportConnection(error) {
  const banner = $("#connection");
  if (error instanceof ApiError && error.status === 0) {
    banner.hidden = false;
    banner.textContent = `The API does not answer: ${error.message}. Retrying…`;
  } else if (error instanceof ApiError && error.status === 401) {
    banner.hidden = false;
    banner.textContent = "The API needs a key for this: use the “API key” button at the top.";
  }
}

function connectionOk() {
  $("#connection").hidden = true;
}

// --- API key and confirmations ---------------------------------------------------------------

function keyDialog({ rejected = false, manual = false } = {}) {
  const dialog = $("#key-dialog");
  const input = $("#api-key-input");
  $("#key-reason").textContent = rejected
    ? "The server refused that key. Enter it again: it is kept for this tab only."
    : manual
      ? "The key is kept for this tab only (sessionStorage) and sent as X-API-Key."
      : "The server asks for an API key. It is kept for this tab only (sessionStorage) and sent as X-API-Key on every request.";
  input.value = "";
  $("#key-forget").hidden = !(manual && apiKey());
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const answer = dialog.returnValue;
        if (answer === "ok" && input.value.trim()) resolve(input.value.trim());
        else {
          if (answer === "forget") setApiKey(null);
          resolve(null);
        }
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

function confirmDialog({ title, body, ok, danger = false }) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-body").textContent = body;
  const okButton = $("#confirm-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "primary";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    (danger ? $("#confirm-cancel") : okButton).focus();
  });
}

function renderKeyButton() {
  $("#api-key-button").textContent = apiKey() ? "API key: set" : "API key: none";
}

// --- readiness -------------------------------------------------------------------------------

async function pollReady() {
  const pill = $("#ready");
  try {
    // /readyz needs no key: its success says nothing about a 401 banner, so it leaves it be
    const { data } = await request("GET", "/readyz", { accept: [503], interactive: false });
    if (data && data.ready) {
      pill.textContent = "ready";
      pill.className = "pill ok";
      pill.title = "Redis answers; training and prediction workers are alive";
    } else {
      const checks = (data && data.checks) || {};
      const failing = Object.entries(checks).find(([, check]) => check && !check.ok);
      pill.textContent = failing ? `not ready: ${failing[0].replace(/_/g, " ")}` : "not ready";
      pill.className = "pill bad";
      pill.title = failing ? failing[1].detail || "" : "";
    }
  } catch (error) {
    pill.textContent = "API unreachable";
    pill.className = "pill bad";
    throw error;
  }
}

// --- datasets and uploads --------------------------------------------------------------------

async function loadDatasets(select = null) {
  const { data } = await request("GET", "/datasets", { interactive: false });
  const dataset = $("#dataset");
  const previous = select || dataset.value || data.default;
  dataset.textContent = "";
  const names = data.datasets.map((d) => d.name);
  if (!names.includes(data.default)) {
    dataset.append(h("option", { value: data.default, text: `${data.default} (default, made on first use)` }));
  }
  for (const info of data.datasets) {
    const size = info.size_bytes >= 1e6 ? `${(info.size_bytes / 1e6).toFixed(1)} MB` : `${(info.size_bytes / 1e3).toFixed(0)} kB`;
    const label = `${info.name} (${size}${info.name === data.default ? ", default" : ""})`;
    dataset.append(h("option", { value: info.name, text: label }));
  }
  dataset.value = [...dataset.options].some((o) => o.value === previous) ? previous : data.default;
}

async function upload() {
  const input = $("#upload-file");
  const status = $("#upload-status");
  const errorBox = $("#upload-error");
  showError(errorBox, null);
  const file = input.files && input.files[0];
  if (!file) {
    showError(errorBox, new Error("Choose a CSV file first."));
    input.focus();
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const button = $("#upload-button");
  button.disabled = true;
  status.textContent = `Uploading ${file.name}…`;
  try {
    const { data } = await request("POST", "/datasets", { body: form });
    const invalid = Object.entries(data.invalid_values || {}).filter(([, n]) => n > 0);
    status.textContent =
      `Stored as ${data.name}: ${fmtInt(data.rows)} rows, ${fmtInt(data.labelled)} labelled ` +
      `(${fmtInt(data.positives)} deaths)` +
      (invalid.length ? `; values outside CDC's vocabulary read as Missing: ${invalid.map(([c, n]) => `${c} ${fmtInt(n)}`).join(", ")}` : "") +
      ". Selected for training.";
    input.value = "";
    await loadDatasets(data.name);
  } catch (error) {
    status.textContent = "";
    showError(errorBox, error);
  } finally {
    button.disabled = false;
  }
}

// --- the train form --------------------------------------------------------------------------

async function loadTrainDefaults() {
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
    run.trainMs = ms;
    run.jobId = data.job_id;
    run.marks.push({ t: (performance.now() - run.t0) / 1000, label: `202 in ${fmtMs(ms)}`, kind: "answer" });
    state.submitted.set(data.job_id, { dataset: body.dataset });
    const now = new Date().toISOString();
    updateJob({
      job_id: data.job_id, kind: "training", status: data.status, progress: 0, stage: null, rows_read: 0,
      submitted_at: now, started_at: null, finished_at: null, result: null, error: null,
    }, { soft: true });
    state.current = data.job_id;
    renderJobs();
    renderCurrentJob();
    jobsLoop.wake();
  } catch (error) {
    run.active = false;
    run.failed = error;
    showError(errorBox, error);
  } finally {
    button.disabled = false;
    renderContrast();
  }
}

// --- jobs ------------------------------------------------------------------------------------

/** Record a job as seen. `soft`: a placeholder that must not overwrite a fresher record. */
function updateJob(job, { soft = false } = {}) {
  const known = state.jobs.get(job.job_id);
  if (soft && known) return;
  const wasFinal = known && FINAL.has(known.status);
  state.jobs.set(job.job_id, job);
  noteJobForRun(job);
  if (FINAL.has(job.status) && !wasFinal && known) {
    state.cancelling.delete(job.job_id);
    modelsLoop.wake(); // a new version may exist
  }
}

async function pollJobs() {
  const current = state.current && state.jobs.get(state.current);
  if (current && !FINAL.has(current.status)) {
    const { data } = await request("GET", `/jobs/${encodeURIComponent(current.job_id)}`, { interactive: false });
    updateJob(data);
  }
  const now = performance.now();
  if (now - (pollJobs.lastList || -Infinity) >= (anyActive() ? LIST_ACTIVE_MS : LIST_IDLE_MS)) {
    pollJobs.lastList = now;
    const { data } = await request("GET", `/jobs?limit=${JOBS_SHOWN}`, { interactive: false });
    for (const job of data.jobs) {
      // the followed job's own poll is fresher than the list's copy
      if (job.job_id !== state.current || FINAL.has(job.status)) updateJob(job);
    }
    const listed = new Set(data.jobs.map((job) => job.job_id));
    for (const id of [...state.jobs.keys()]) {
      if (!listed.has(id) && id !== state.current) state.jobs.delete(id);
    }
    const followed = state.current && state.jobs.get(state.current);
    if (!followed || FINAL.has(followed.status)) {
      // follow a job started elsewhere (another tab, the CLI) while it runs
      const running = data.jobs.find((job) => !FINAL.has(job.status));
      if (running) state.current = running.job_id;
    }
  }
  connectionOk();
  renderJobs();
  renderCurrentJob();
  renderContrast();
}

function jobsDelay() {
  if (hidden()) return HIDDEN_MS;
  const current = state.current && state.jobs.get(state.current);
  if (current && !FINAL.has(current.status)) return JOB_ACTIVE_MS;
  return anyActive() ? LIST_ACTIVE_MS : LIST_IDLE_MS;
}

const jobsLoop = new Loop(pollJobs, jobsDelay);

function describeOutcome(job) {
  if (job.status === "succeeded" && job.result) {
    const r = job.result;
    const auc = r.metrics && typeof r.metrics.roc_auc === "number" ? ` · ROC AUC ${r.metrics.roc_auc.toFixed(3)}` : "";
    if (r.promoted) return `${r.version}, promoted${auc}`;
    const gate = r.gate && r.gate.passed === false ? `gate failed: ${(r.gate.reasons || []).join("; ")}` : "not promoted";
    return `${r.version}, not promoted (${gate})${auc}`;
  }
  if (job.error) return `${job.error.code}: ${job.error.message}`;
  if (job.status === "queued") return "waiting for a training worker";
  if (job.status === "running") return STAGES[job.stage] || job.stage || "running";
  return "—";
}

function jobDuration(job) {
  if (job.started_at && job.finished_at) return fmtSeconds(secondsBetween(job.started_at, job.finished_at));
  if (job.started_at && !FINAL.has(job.status)) {
    const s = secondsBetween(job.started_at, new Date().toISOString());
    return s === null ? "—" : `${fmtSeconds(Math.max(0, s))} so far`;
  }
  return "—";
}

const jobRows = new Map();
const JOB_CELL_LABELS = { progress: "Progress", outcome: "Result or error" };
const TIME_FIELDS = [
  ["submitted", "submitted_at"],
  ["started", "started_at"],
  ["finished", "finished_at"],
  ["duration", null],
];

function jobRow(job) {
  let row = jobRows.get(job.job_id);
  if (!row) {
    const cells = {};
    const tr = h("tr", { "data-job": job.job_id });
    for (const name of ["job", "progress", "times", "outcome"]) {
      cells[name] = h("td", { class: `col-${name}`, "data-label": JOB_CELL_LABELS[name] || null });
      tr.append(cells[name]);
    }
    const badge = h("span", { class: "badge" });
    cells.job.append(h("code", { title: job.job_id, text: shortId(job.job_id) }), badge);
    const bar = h("progress", { max: "1", value: "0", "aria-label": `Progress of job ${shortId(job.job_id)}` });
    const pct = h("span", { class: "pct" });
    cells.progress.append(bar, pct);
    const times = {};
    for (const [name, field] of TIME_FIELDS) {
      times[name] = h(field ? "time" : "span", {});
      cells.times.append(h("span", { class: "time-line" }, h("span", { class: "time-label", text: name }), times[name]));
    }
    const cancel = h("button", {
      type: "button",
      class: "small danger",
      "aria-label": `Cancel job ${shortId(job.job_id)}`,
      "data-focus": `cancel-${job.job_id}`,
      onclick: () => cancelJob(job.job_id),
      text: "Cancel",
    });
    cells.job.append(cancel);
    row = { tr, cells, badge, bar, pct, times, cancel };
    jobRows.set(job.job_id, row);
  }
  row.tr.dataset.status = job.status;
  row.badge.textContent = job.status;
  row.badge.className = `badge status-${job.status}`;
  row.bar.value = job.status === "succeeded" ? 1 : job.progress;
  row.pct.textContent = fmtPct(job.status === "succeeded" ? 1 : job.progress, 0);
  for (const [name, field] of TIME_FIELDS) {
    if (!field) continue;
    const iso = job[field];
    row.times[name].textContent = fmtTime(iso);
    if (iso) row.times[name].setAttribute("datetime", iso);
  }
  row.times.duration.textContent = jobDuration(job);
  row.cells.outcome.textContent = describeOutcome(job);
  row.cells.outcome.classList.toggle("error-text", Boolean(job.error));
  row.cancel.hidden = FINAL.has(job.status);
  row.cancel.disabled = state.cancelling.has(job.job_id);
  return row;
}

function renderJobs() {
  const tbody = $("#jobs-table tbody");
  const jobs = [...state.jobs.values()].sort((a, b) => String(b.submitted_at).localeCompare(String(a.submitted_at)));
  const rows = jobs.map((job) => jobRow(job).tr);
  for (const [id, row] of jobRows) {
    if (!state.jobs.has(id)) {
      row.tr.remove();
      jobRows.delete(id);
    }
  }
  const inOrder = rows.length === tbody.children.length && rows.every((tr, i) => tbody.children[i] === tr);
  if (!inOrder) keepingFocus(tbody, () => tbody.replaceChildren(...rows));
  $("#jobs-empty").hidden = rows.length > 0;
  $("#jobs-table").hidden = rows.length === 0;
}

function renderCurrentJob() {
  const box = $("#current-job");
  const job = state.current && state.jobs.get(state.current);
  if (!job) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.status = job.status;
  box.dataset.job = job.job_id;
  const origin = state.submitted.get(job.job_id);
  $("#current-job-title").textContent = `Job ${shortId(job.job_id)}${origin ? ` on ${origin.dataset}` : ""}`;
  const badge = $("#current-job-status");
  badge.textContent = job.status;
  badge.className = `badge status-${job.status}`;
  const progress = $("#job-progress");
  progress.value = job.status === "succeeded" ? 1 : job.progress;
  progress.setAttribute("aria-valuetext", `${fmtPct(progress.value, 0)}${job.stage ? `, ${STAGES[job.stage] || job.stage}` : ""}`);
  const detail = $("#current-job-detail");
  if (job.status === "running") {
    const cancelNote = state.cancelling.has(job.job_id) ? " · cancel requested: the worker stops at its next progress report" : "";
    detail.textContent = `${STAGES[job.stage] || job.stage || "starting"} · ${fmtPct(job.progress, 0)} · ${fmtInt(job.rows_read)} rows read${cancelNote}`;
  } else if (job.status === "succeeded") {
    detail.textContent = `${describeOutcome(job)} · ${fmtInt(job.rows_read)} rows read in ${jobDuration(job)}`;
  } else {
    detail.textContent = describeOutcome(job);
  }
  detail.classList.toggle("error-text", job.status === "failed");
  const cancel = $("#cancel-job");
  cancel.hidden = FINAL.has(job.status);
  cancel.disabled = state.cancelling.has(job.job_id);
  cancel.textContent = state.cancelling.has(job.job_id) ? "Cancelling…" : "Cancel this job";
}

async function cancelJob(jobId) {
  state.cancelling.add(jobId);
  renderJobs();
  renderCurrentJob();
  try {
    const { data } = await request("DELETE", `/jobs/${encodeURIComponent(jobId)}`);
    updateJob(data);
  } catch (error) {
    state.cancelling.delete(jobId);
    showError($("#train-error"), error);
  }
  renderJobs();
  renderCurrentJob();
  jobsLoop.wake();
}

// --- the contrast: a training measured from the browser ---------------------------------------

function startRun(dataset) {
  const run = {
    t0: performance.now(),
    dataset,
    jobId: null,
    trainMs: null,
    samples: [],
    marks: [{ t: 0, label: "submitted", kind: "submit" }],
    runningAt: null,
    finishedAt: null,
    job: null,
    lastVersion: undefined,
    sawNoModel: false,
    takeovers: [],
    active: true,
    failed: null,
  };
  state.run = run;
  $("#contrast-hint").hidden = true;
  samplerLoop.wake();
  return run;
}

const runTime = (run) => (performance.now() - run.t0) / 1000;

function noteJobForRun(job) {
  const run = state.run;
  if (!run || job.job_id !== run.jobId) return;
  run.job = job;
  const t = runTime(run);
  if (run.runningAt === null && (job.status === "running" || FINAL.has(job.status))) {
    run.runningAt = t;
    if (job.status === "running") run.marks.push({ t, label: "worker started", kind: "start" });
  }
  if (run.finishedAt === null && FINAL.has(job.status)) {
    run.finishedAt = t;
    run.marks.push({ t, label: `job ${job.status}`, kind: job.status === "succeeded" ? "finish" : "stop" });
  }
}

function noteVersion(run, version, t) {
  if (run.lastVersion === undefined) {
    if (run.sawNoModel) {
      run.takeovers.push({ t, from: null, to: version });
      run.marks.push({ t, label: `${version} serving`, kind: "takeover" });
    }
  } else if (version !== run.lastVersion) {
    run.takeovers.push({ t, from: run.lastVersion, to: version });
    run.marks.push({ t, label: `${version} took over`, kind: "takeover" });
  }
  run.lastVersion = version;
}

function runIsOver(run, t) {
  if (run.samples.length >= MAX_SAMPLES) return true;
  if (run.finishedAt === null) return false;
  const since = t - run.finishedAt;
  if (since >= MAX_AFTER_FINISH_S) return true;
  const result = run.job && run.job.result;
  const expected = run.job.status === "succeeded" && result && result.promoted ? result.version : null;
  if (expected && run.lastVersion !== expected) return false; // wait for the swap
  return since >= AFTER_FINISH_S;
}

async function sampleOnce() {
  const run = state.run;
  if (!run || !run.active) return;
  const t = runTime(run);
  try {
    const { data, ms } = await request("POST", "/predict", { json: { records: [SAMPLE_RECORD] }, interactive: false });
    run.samples.push({ t, ms, ok: true, version: data.model_version });
    noteVersion(run, data.model_version, t);
  } catch (error) {
    if (error instanceof ApiError && error.code === "no_production_model") run.sawNoModel = true;
    run.samples.push({ t, ms: error.ms ?? 0, ok: false, code: error.code || "error", version: null });
  }
  if (runIsOver(run, runTime(run))) run.active = false;
  renderContrast();
}

const samplerLoop = new Loop(sampleOnce, (elapsed) => {
  const run = state.run;
  return run && run.active ? Math.max(20, SAMPLE_MS - elapsed) : null;
});

function trainingWindow(run) {
  const end = run.finishedAt ?? runTime(run);
  return run.samples.filter((s) => s.t <= end);
}

function renderContrast() {
  const run = state.run;
  if (!run) {
    drawLatency($("#latency-chart"), { samples: [] });
    return;
  }
  const set = (id, text) => {
    $(id).textContent = text;
  };
  set("#n-train-answer", run.trainMs === null ? (run.failed ? "refused" : "waiting…") : `${fmtMs(run.trainMs)} (202 Accepted)`);
  const job = run.job;
  if (job && job.started_at && job.finished_at) {
    set("#n-train-duration", `${fmtSeconds(secondsBetween(job.started_at, job.finished_at))} in a worker`);
  } else if (run.runningAt !== null && run.finishedAt === null) {
    set("#n-train-duration", `running… ${fmtSeconds(runTime(run) - run.runningAt)} so far`);
  } else {
    set("#n-train-duration", job ? job.status : "—");
  }
  const seconds = job && job.result ? job.result.training_seconds : null;
  set("#n-training-seconds", typeof seconds === "number" ? fmtSeconds(seconds) : "—");
  const during = trainingWindow(run);
  const ok = during.filter((s) => s.ok);
  set("#n-predictions", `${ok.length} answered${describeFailures(during)}`);
  const latencies = ok.map((s) => s.ms);
  set(
    "#n-latency",
    latencies.length ? `${fmtMs(percentile(latencies, 50))} / ${fmtMs(percentile(latencies, 95))} / ${fmtMs(Math.max(...latencies))}` : "—",
  );
  const last = run.takeovers[run.takeovers.length - 1];
  if (last) {
    set("#n-takeover", `${last.to} at ${last.t.toFixed(2)} s (before: ${last.from || "no model"})`);
  } else if (job && FINAL.has(job.status) && !(job.result && job.result.promoted)) {
    set("#n-takeover", job.status === "succeeded" ? `none: ${job.result.version} was not promoted` : `none: the job ${job.status}`);
  } else {
    set("#n-takeover", run.active ? "not yet" : "—");
  }
  $("#contrast-panel").dataset.state = run.active ? "measuring" : "done";
  drawLatency($("#latency-chart"), {
    samples: run.samples,
    marks: run.marks,
    band: run.runningAt === null ? null : { from: run.runningAt, to: run.finishedAt, label: "training in a worker" },
    until: runTime(run),
  });
  renderLegend(run);
  $("#contrast-story").textContent = story(run, ok, latencies);
}

function describeFailures(samples) {
  const counts = new Map();
  for (const s of samples) if (!s.ok) counts.set(s.code, (counts.get(s.code) || 0) + 1);
  if (!counts.size) return ", none failed";
  const names = { no_production_model: "no model yet" };
  return `; ${[...counts].map(([code, n]) => `${n} ${names[code] || code}`).join(", ")}`;
}

function renderLegend(run) {
  const versions = [...new Set(run.samples.filter((s) => s.ok).map((s) => s.version))];
  const items = versions.map((v) => h("li", {}, h("span", { class: `swatch hue-${versionHue(v)}`, "aria-hidden": "true" }), `answered by ${v}`));
  if (run.samples.some((s) => !s.ok)) items.push(h("li", {}, h("span", { class: "swatch miss", "aria-hidden": "true" }), "no answer (e.g. no model yet)"));
  $("#latency-legend").replaceChildren(...items);
}

function story(run, ok, latencies) {
  if (run.failed) return "The training was not accepted: see the error above.";
  if (run.trainMs === null) return "Submitting…";
  const job = run.job;
  const median = latencies.length ? fmtMs(percentile(latencies, 50)) : null;
  const answered = `${ok.length} prediction${ok.length === 1 ? "" : "s"} answered${median ? ` (median ${median}, max ${fmtMs(Math.max(...latencies))})` : ""}`;
  if (!job || !FINAL.has(job.status)) {
    return `POST /train answered in ${fmtMs(run.trainMs)}; the training is running in a worker. Meanwhile ${answered}.`;
  }
  const ran = job.started_at && job.finished_at ? fmtSeconds(secondsBetween(job.started_at, job.finished_at)) : "a moment";
  let text = `POST /train answered in ${fmtMs(run.trainMs)}; the training then ran ${ran} in a worker (${job.status}). Meanwhile ${answered}`;
  const takeover = run.takeovers[run.takeovers.length - 1];
  if (takeover) {
    text += takeover.from
      ? `, from ${takeover.from} until ${takeover.to} took over ${takeover.t.toFixed(2)} s after the submit.`
      : `; ${takeover.to} answered from ${takeover.t.toFixed(2)} s on.`;
  } else {
    text += ".";
  }
  return text;
}

// --- models ----------------------------------------------------------------------------------

let modelsSignature = "";

async function pollModels() {
  const { data } = await request("GET", "/models", { interactive: false });
  connectionOk();
  const signature = JSON.stringify(data);
  if (signature === modelsSignature) return;
  modelsSignature = signature;
  state.production = data.production;
  state.versions = data.versions;
  $("#production").textContent = data.production || "none";
  renderModels();
  if (!state.selected && data.versions.length) await selectVersion(data.production || data.versions[0].version);
}

const modelsLoop = new Loop(pollModels, () => (hidden() ? HIDDEN_MS : MODELS_MS));

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
        ),
      );
    });
    tbody.replaceChildren(...rows);
  });
  $("#models-empty").hidden = state.versions.length > 0;
  $("#models-table").hidden = state.versions.length === 0;
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

function renderDetail() {
  const meta = state.detail;
  if (!meta) return;
  $("#model-detail-title").textContent = `${meta.version}: metrics per group`;
  const rows = meta.rows || {};
  const params = meta.params || {};
  const gate = meta.gate || {};
  const parts = [
    `Trained ${fmtDateTime(meta.created_at)} on ${(meta.dataset && meta.dataset.name) || "?"}`,
    `${fmtInt(rows.train)} train / ${fmtInt(rows.test)} test rows`,
    `C=${params.C}, class_weight=${params.class_weight ?? "none"}, max_iter=${params.max_iter}`,
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

// --- predict ---------------------------------------------------------------------------------

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

// --- start -----------------------------------------------------------------------------------

async function start() {
  onKeyNeeded((rejected) => keyDialog({ rejected }));
  renderKeyButton();
  document.addEventListener("apikeychange", () => {
    renderKeyButton();
    if (!apiKey()) return;
    // a new key may open what a 401 closed: reload what the page could not read
    if (!$("#dataset").options.length) loadDatasets().catch(reportConnection);
    jobsLoop.wake();
    modelsLoop.wake();
  });
  $("#api-key-button").addEventListener("click", async () => {
    const key = await keyDialog({ manual: true });
    if (key) setApiKey(key);
  });
  $("#api-key-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      $("#key-dialog").close("ok");
    }
  });
  $("#train-form").addEventListener("submit", submitTraining);
  $("#upload-button").addEventListener("click", upload);
  $("#cancel-job").addEventListener("click", () => state.current && cancelJob(state.current));
  $("#predict-form").addEventListener("submit", submitPrediction);
  $("#rollback-button").addEventListener("click", rollback);
  $("#group-column").addEventListener("change", renderDetail);
  $("#group-metric").addEventListener("change", renderDetail);
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

  const setup = [
    request("GET", "/vocabulary", { interactive: false }).then(({ data }) => {
      state.vocabulary = data;
      buildPredictForm(data);
    }),
    loadDatasets(),
    loadTrainDefaults(),
  ];
  const results = await Promise.allSettled(setup);
  const failure = results.find((r) => r.status === "rejected");
  if (failure) reportConnection(failure.reason);
  renderContrast();
  new Loop(pollReady, () => (hidden() ? HIDDEN_MS : READY_MS)).wake();
  jobsLoop.wake();
  modelsLoop.wake();
  document.body.dataset.ready = "true";
}

start();
