// Formatting for display: numbers, durations, times, ids. "—" stands for a missing value.

const integer = new Intl.NumberFormat("en-US");
export const fmtInt = (n) => (typeof n === "number" ? integer.format(n) : "—");
export const fmtPct = (p, digits = 1) => (typeof p === "number" ? `${(p * 100).toFixed(digits)}%` : "—");
export const fmtMetric = (v) => (typeof v === "number" ? v.toFixed(3) : "—");
export const fmtMs = (ms) => (ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);

export function fmtSeconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "—";
  if (s < 60) return `${s.toFixed(2)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

export function fmtDateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return `${date.toLocaleDateString("en-CA")} ${date.toLocaleTimeString("en-GB", { hour12: false })}`;
}

export function secondsBetween(a, b) {
  if (!a || !b) return null;
  const s = (new Date(b).getTime() - new Date(a).getTime()) / 1000;
  return Number.isFinite(s) ? s : null;
}

export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export const shortId = (id) => String(id).slice(0, 8);
