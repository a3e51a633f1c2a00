// What the panels share: one mutable `state` object, the job statuses that are final, and the
// polling rates (polling.js says why this is polling and not server-sent events).

export const JOB_ACTIVE_MS = 250;
export const LIST_ACTIVE_MS = 1000;
export const LIST_IDLE_MS = 3000;
export const MODELS_MS = 5000;
export const READY_MS = 10000;
export const HIDDEN_MS = 15000;
export const SAMPLE_MS = 300;
export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export const state = {
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

/** Is any known job still queued or running? */
export const anyActive = () => [...state.jobs.values()].some((job) => !FINAL.has(job.status));
