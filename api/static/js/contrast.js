// The contrast: a training measured from the browser. From the submit on, the page scores one
// record every few hundred milliseconds and charts each answer's latency against the training's
// timeline (202 Accepted, worker started, job ended, a new version taking over).

import { ApiError, request } from "./api.js";
import { drawLatency, versionHue } from "./charts.js";
import { $, h } from "./dom.js";
import { fmtMs, fmtSeconds, percentile, secondsBetween } from "./format.js";
import { Loop } from "./polling.js";
import { FINAL, SAMPLE_MS, state } from "./state.js";

const AFTER_FINISH_S = 2; // keep sampling this long after the job ended, to show the swap
const MAX_AFTER_FINISH_S = 10;
const MAX_SAMPLES = 4000;
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

export function startRun(dataset) {
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

/** POST /train answered 202 in `ms`: the run now follows job `jobId`. */
export function runAccepted(run, jobId, ms) {
  run.trainMs = ms;
  run.jobId = jobId;
  run.marks.push({ t: runTime(run), label: `202 in ${fmtMs(ms)}`, kind: "answer" });
}

/** POST /train was refused (or never answered): stop sampling, and say so. */
export function runRefused(run, error) {
  run.active = false;
  run.failed = error;
}

export function noteJobForRun(job) {
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

export function renderContrast() {
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
