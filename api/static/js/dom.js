// Tiny DOM helpers: query, build elements, show an error, re-render without losing focus.

import { ApiError } from "./api.js";

export const $ = (selector) => document.querySelector(selector);

export function h(tag, attrs = {}, ...children) {
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

export function showError(node, error) {
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

/** Re-render inside `container` without losing keyboard focus (buttons carry data-focus). */
export function keepingFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : null;
  render();
  if (key) {
    const again = container.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus();
  }
}
