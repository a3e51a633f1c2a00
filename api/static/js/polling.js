// Everything is polled with setTimeout chains, one request in flight per loop, so the rate is
// bounded whatever the server's speed: the job being followed 4 times a second while it runs,
// the job list every second while anything runs (every 3 s when idle), models every 5 s,
// readiness every 10 s; all of them slower while the tab is hidden. See the README ("Dashboard")
// for why this is polling and not server-sent events. The rates are in state.js.

import { ApiError } from "./api.js";
import { $ } from "./dom.js";

export class Loop {
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

export const hidden = () => document.visibilityState === "hidden";

export function reportConnection(error) {
  const banner = $("#connection");
  if (error instanceof ApiError && error.status === 0) {
    banner.hidden = false;
    banner.textContent = `The API does not answer: ${error.message}. Retrying…`;
  } else if (error instanceof ApiError && error.status === 401) {
    banner.hidden = false;
    banner.textContent = "The API needs a key for this: use the “API key” button at the top.";
  }
}

export function connectionOk() {
  $("#connection").hidden = true;
}
