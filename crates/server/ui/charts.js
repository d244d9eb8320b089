// Small SVG charts, drawn from the usage report: no library, nothing fetched.

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function colour(i) {
  return COLOURS[i % COLOURS.length];
}

export function compact(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/**
 * Stacked bars over time. `buckets`: sorted times (ISO strings); `series`: [{ name,
 * values: Map(time → number) }]. Labelled for screen readers with a summary.
 */
export function stackedBars({ title, buckets, series, width = 760, height = 260 }) {
  const pad = { left: 48, right: 12, top: 12, bottom: 36 };
  const totals = buckets.map((t) => series.reduce((n, s) => n + (s.values.get(t) || 0), 0));
  const max = Math.max(1, ...totals);
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "aria-label": `${title}: ${compact(totals.reduce((a, b) => a + b, 0))} in all over ${buckets.length} periods` });
  svg.append(el("title", {}, title));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH - (plotH * i) / 4;
    svg.append(el("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }));
    svg.append(el("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, compact((max * i) / 4)));
  }
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, slot * 0.8);
  buckets.forEach((t, i) => {
    let y = pad.top + plotH;
    series.forEach((s, j) => {
      const v = s.values.get(t) || 0;
      if (!v) return;
      const h = (plotH * v) / max;
      y -= h;
      const rect = el("rect", { x: pad.left + i * slot + (slot - barW) / 2, y, width: barW, height: h, fill: colour(j), "data-series": s.name });
      rect.append(el("title", {}, `${s.name} ${t}: ${compact(v)}`));
      svg.append(rect);
    });
  });
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  buckets.forEach((t, i) => {
    if (i % every) return;
    const label = t.length > 10 && !t.endsWith("T00:00:00Z") ? t.slice(5, 16).replace("T", " ") : t.slice(0, 10);
    svg.append(el("text", { x: pad.left + i * slot + slot / 2, y: height - 14, "text-anchor": "middle", class: "tick" }, label));
  });
  return svg;
}

/** Horizontal bars, one per group: [{ name, value }]. */
export function barList({ title, groups, width = 760 }) {
  const rowH = 26;
  const labelW = 220;
  const height = Math.max(1, groups.length) * rowH + 8;
  const max = Math.max(1, ...groups.map((g) => g.value));
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart bars", "aria-label": title });
  svg.append(el("title", {}, title));
  groups.forEach((g, i) => {
    const y = 4 + i * rowH;
    svg.append(el("text", { x: labelW - 8, y: y + 17, "text-anchor": "end", class: "label" }, g.name.length > 30 ? `${g.name.slice(0, 29)}…` : g.name));
    const w = ((width - labelW - 70) * g.value) / max;
    svg.append(el("rect", { x: labelW, y: y + 4, width: Math.max(1, w), height: rowH - 8, fill: colour(i) }));
    svg.append(el("text", { x: labelW + w + 6, y: y + 17, class: "label" }, compact(g.value)));
  });
  return svg;
}
