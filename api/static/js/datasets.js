// The dataset drop-down of the Train panel, and uploading a CDC case CSV into it.

import { request } from "./api.js";
import { $, h, showError } from "./dom.js";
import { fmtInt } from "./format.js";

export async function loadDatasets(select = null) {
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

export function setupDatasets() {
  $("#upload-button").addEventListener("click", upload);
}
