// The jobs: the list of the latest ones, the job followed in the Train panel (4 polls a second
// while it runs), and cancelling. A job that ends feeds the contrast and may add a model version.

import { request } from "./api.js";
import { noteJobForRun, renderContrast } from "./contrast.js";
import { $, h, keepingFocus, showError } from "./dom.js";
import { fmtInt, fmtPct, fmtSeconds, fmtTime, secondsBetween, shortId } from "./format.js";
import { modelsLoop } from "./models.js";
import { Loop, connectionOk, hidden } from "./polling.js";
import { FINAL, HIDDEN_MS, JOB_ACTIVE_MS, LIST_ACTIVE_MS, LIST_IDLE_MS, anyActive, state } from "./state.js";

const JOBS_SHOWN = 10;
const STAGES = {
  reading: "reading the CSV",
  fitting: "fitting",
  evaluating: "evaluating",
  evaluated: "evaluated",
  saving: "saving the version",
  done: "done",
};

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

export const jobsLoop = new Loop(pollJobs, jobsDelay);

/** Follow a job this page has just submitted (POST /train answered 202 Accepted). */
export function followSubmitted(jobId, status, dataset) {
  state.submitted.set(jobId, { dataset });
  const now = new Date().toISOString();
  updateJob({
    job_id: jobId, kind: "training", status, progress: 0, stage: null, rows_read: 0,
    submitted_at: now, started_at: null, finished_at: null, result: null, error: null,
  }, { soft: true });
  state.current = jobId;
  renderJobs();
  renderCurrentJob();
  jobsLoop.wake();
}

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
    // A cancel is an action on the job, not the removal of its record (issue #10).
    const { data } = await request("POST", `/jobs/${encodeURIComponent(jobId)}/cancel`);
    updateJob(data);
  } catch (error) {
    state.cancelling.delete(jobId);
    showError($("#train-error"), error);
  }
  renderJobs();
  renderCurrentJob();
  jobsLoop.wake();
}

export function setupJobs() {
  $("#cancel-job").addEventListener("click", () => state.current && cancelJob(state.current));
}
