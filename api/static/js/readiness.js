// The readiness pill in the top bar: GET /readyz every 10 s (slower while the tab is hidden).

import { request } from "./api.js";
import { $ } from "./dom.js";
import { Loop, hidden } from "./polling.js";
import { HIDDEN_MS, READY_MS } from "./state.js";

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

export const readyLoop = new Loop(pollReady, () => (hidden() ? HIDDEN_MS : READY_MS));
