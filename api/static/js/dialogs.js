// The two modal dialogs: the API key (asked for when the server answers 401, or from the
// "API key" button) and the confirmation before promoting or rolling back.

import { apiKey, onKeyNeeded, setApiKey } from "./api.js";
import { $ } from "./dom.js";

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

export function confirmDialog({ title, body, ok, danger = false }) {
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

export function renderKeyButton() {
  $("#api-key-button").textContent = apiKey() ? "API key: set" : "API key: none";
}

/** Ask for the key when a request needs one, and from the "API key" button. */
export function setupKeyDialog() {
  onKeyNeeded((rejected) => keyDialog({ rejected }));
  renderKeyButton();
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
}
