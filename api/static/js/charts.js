// Two small charts drawn as inline SVG: prediction latency over time, and one metric per group.
// Colours come from CSS classes (dashboard.css), so the charts follow the page's theme.

const NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  if (text !== null) node.textContent = text;
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

/** A round number >= value, for an axis' end (1, 2, 2.5, 5 times a power of ten). */
export function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function ticks(max, count) {
  const step = niceCeil(max / count);
  const out = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

/** Index of a version in the palette: v1 -> 0, v2 -> 1, ... (versions cycle through 6 hues). */
export function versionHue(version) {
  const n = Number.parseInt(String(version).replace(/^\D+/, ""), 10);
  return Number.isFinite(n) ? (n - 1) % 6 : 0;
}

/**
 * Latency (ms) against seconds since the training was submitted.
 * samples: [{t, ms, ok, version, code}]; marks: [{t, label}]; band: {from, to, label} or null.
 */
export function drawLatency(svg, { samples, marks = [], band = null, until = 0 }) {
  clear(svg);
  const width = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 600, 260);
  const height = Number(svg.getAttribute("height")) || 220;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const m = { left: 44, right: 12, top: 40, bottom: 28 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const okMs = samples.filter((s) => s.ok).map((s) => s.ms);
  const yMax = niceCeil(Math.max(5, ...okMs) * 1.1);
  const lastT = samples.length ? samples[samples.length - 1].t : 0;
  const xMax = niceCeil(Math.max(5, until, lastT, ...marks.map((k) => k.t)));
  const x = (t) => m.left + (t / xMax) * plotW;
  const y = (ms) => m.top + plotH - (Math.min(ms, yMax) / yMax) * plotH;

  const axes = svgEl("g", { class: "axes" });
  for (const v of ticks(yMax, 4)) {
    axes.appendChild(svgEl("line", { x1: m.left, x2: m.left + plotW, y1: y(v), y2: y(v), class: "gridline" }));
    axes.appendChild(svgEl("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v}`));
  }
  for (const v of ticks(xMax, Math.max(2, Math.floor(plotW / 70)))) {
    axes.appendChild(svgEl("text", { x: x(v), y: height - 10, "text-anchor": "middle" }, `${v}s`));
  }
  axes.appendChild(svgEl("text", { x: 4, y: m.top - 10, class: "axis-title" }, "ms"));
  svg.appendChild(axes);
  if (!samples.length && !marks.length) {
    svg.appendChild(
      svgEl("text", { x: m.left + plotW / 2, y: m.top + plotH / 2, "text-anchor": "middle", class: "empty" }, "No measurement yet: start a training"),
    );
    return;
  }

  if (band && band.from !== null && band.from !== undefined) {
    const to = band.to ?? lastT;
    const bandG = svgEl("g", { class: "band" });
    bandG.appendChild(
      svgEl("rect", { x: x(band.from), y: m.top, width: Math.max(1, x(to) - x(band.from)), height: plotH }),
    );
    bandG.appendChild(svgEl("text", { x: x(band.from) + 4, y: m.top + plotH - 6 }, band.label));
    svg.appendChild(bandG);
  }

  const okSamples = samples.filter((s) => s.ok);
  if (okSamples.length > 1) {
    const points = okSamples.map((s) => `${x(s.t).toFixed(1)},${y(s.ms).toFixed(1)}`).join(" ");
    svg.appendChild(svgEl("polyline", { points, class: "trace" }));
  }
  const dots = svgEl("g", { class: "dots" });
  for (const s of samples) {
    if (s.ok) {
      const dot = svgEl("circle", { cx: x(s.t), cy: y(s.ms), r: 3.2, class: `dot hue-${versionHue(s.version)}` });
      dot.appendChild(svgEl("title", {}, `${s.t.toFixed(2)} s: ${s.ms.toFixed(1)} ms by ${s.version}`));
      dots.appendChild(dot);
    } else {
      const cx = x(s.t);
      const cy = m.top + plotH - 4;
      const miss = svgEl("path", { d: `M${cx - 3},${cy - 3}L${cx + 3},${cy + 3}M${cx - 3},${cy + 3}L${cx + 3},${cy - 3}`, class: "miss" });
      miss.appendChild(svgEl("title", {}, `${s.t.toFixed(2)} s: ${s.code}`));
      dots.appendChild(miss);
    }
  }
  svg.appendChild(dots);

  const markG = svgEl("g", { class: "marks" });
  const rowEnds = [-Infinity, -Infinity, -Infinity];
  for (const mark of [...marks].sort((a, b) => a.t - b.t)) {
    const mx = x(mark.t);
    markG.appendChild(svgEl("line", { x1: mx, x2: mx, y1: m.top - 4, y2: m.top + plotH, class: `mark ${mark.kind || ""}` }));
    const w = mark.label.length * 5.8 + 4;
    // the first row where the label fits beside its line; else the emptiest row, pushed right
    let left = mx + 3;
    let row = rowEnds.findIndex((end) => left > end + 4);
    if (row < 0) {
      row = rowEnds.indexOf(Math.min(...rowEnds));
      left = rowEnds[row] + 6;
    }
    left = Math.min(left, width - 2 - w);
    rowEnds[row] = left + w;
    markG.appendChild(
      svgEl(
        "text",
        { x: left, y: 10 + row * 11, class: `mark-label ${mark.kind || ""}` },
        mark.label,
      ),
    );
  }
  svg.appendChild(markG);
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Horizontal bars, one per row: rows [{label, value (0..1 or null), note}].
 */
export function drawBars(svg, rows, { format = (v) => v.toFixed(3) } = {}) {
  clear(svg);
  const width = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 600, 260);
  const barH = 18;
  const gap = 6;
  const labelW = Math.min(260, Math.round(width * 0.42));
  const valueW = 52;
  const height = rows.length * (barH + gap) + gap;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", String(height));
  const plotW = width - labelW - valueW - 8;
  const maxChars = Math.max(8, Math.floor(labelW / 6.4));
  rows.forEach((row, i) => {
    const top = gap + i * (barH + gap);
    const g = svgEl("g", { class: "bar-row" });
    g.appendChild(svgEl("title", {}, `${row.label}: ${row.value === null ? "undefined" : format(row.value)}${row.note ? ` (${row.note})` : ""}`));
    g.appendChild(svgEl("text", { x: labelW - 6, y: top + barH - 5, "text-anchor": "end", class: "bar-label" }, truncate(row.label, maxChars)));
    g.appendChild(svgEl("rect", { x: labelW, y: top, width: plotW, height: barH, class: "bar-track" }));
    if (row.value !== null && row.value !== undefined) {
      const w = Math.max(0, Math.min(1, row.value)) * plotW;
      g.appendChild(svgEl("rect", { x: labelW, y: top, width: w, height: barH, class: "bar" }));
    }
    g.appendChild(
      svgEl("text", { x: labelW + plotW + 6, y: top + barH - 5, class: "bar-value" }, row.value === null || row.value === undefined ? "n/a" : format(row.value)),
    );
    svg.appendChild(g);
  });
}
