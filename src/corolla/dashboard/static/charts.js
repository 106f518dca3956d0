// Line charts in SVG: no library, nothing fetched from elsewhere.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fb5", "#d1495b", "#2a9d8f", "#e9a03b", "#7b5ea7", "#6c757d",
  "#3d405b", "#81b29a", "#f28482", "#118ab2"];

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) {
    element.setAttribute(key, String(value));
  }
  return element;
}

function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

// series: [{name, points: [[x, y], ...]}]; returns an <svg class="chart">.
// Each point is a <circle data-series data-x data-y> with a tooltip.
function lineChart(title, series, options) {
  const opts = Object.assign({ width: 420, height: 220, xLabel: "round", format: formatNumber },
    options || {});
  const margin = { left: 56, right: 12, top: 24, bottom: 30 };
  const width = opts.width, height = opts.height;
  const svg = svgElement("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
  });
  svg.dataset.title = title;
  const heading = svgElement("text", { x: margin.left, y: 15, class: "chart-title" });
  heading.textContent = title;
  svg.appendChild(heading);
  const points = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
  if (points.length === 0) {
    const empty = svgElement("text", { x: width / 2, y: height / 2, class: "chart-empty" });
    empty.textContent = "no values yet";
    svg.appendChild(empty);
    return svg;
  }
  let [xMin, xMax] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (xMin === xMax) { xMin -= 1; xMax += 1; }
  if (yMin === yMax) { const pad = Math.abs(yMin) * 0.1 || 1; yMin -= pad; yMax += pad; }
  const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
  const sx = (x) => margin.left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y) => margin.top + (1 - (y - yMin) / (yMax - yMin)) * plotH;
  svg.appendChild(svgElement("rect", {
    x: margin.left, y: margin.top, width: plotW, height: plotH, class: "plot",
  }));
  for (const y of [yMin, (yMin + yMax) / 2, yMax]) {
    svg.appendChild(svgElement("line", {
      x1: margin.left, x2: margin.left + plotW, y1: sy(y), y2: sy(y), class: "grid",
    }));
    const label = svgElement("text", { x: margin.left - 4, y: sy(y) + 4, class: "axis y" });
    label.textContent = opts.format(y);
    svg.appendChild(label);
  }
  for (const x of [xMin, xMax]) {
    const label = svgElement("text", { x: sx(x), y: height - 12, class: "axis x" });
    label.textContent = opts.xFormat ? opts.xFormat(x) : formatNumber(x);
    svg.appendChild(label);
  }
  const xName = svgElement("text", { x: margin.left + plotW / 2, y: height - 2, class: "axis x" });
  xName.textContent = opts.xLabel;
  svg.appendChild(xName);
  series.forEach((s, index) => {
    const color = PALETTE[index % PALETTE.length];
    const valid = s.points.filter((p) => p[1] !== null && isFinite(p[1]));
    if (valid.length > 1) {
      svg.appendChild(svgElement("polyline", {
        points: valid.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "),
        stroke: color, class: "line",
      }));
    }
    if (!opts.noDots) {
      for (const [x, y] of valid) {
        const dot = svgElement("circle", { cx: sx(x), cy: sy(y), r: 3, fill: color, class: "dot" });
        dot.dataset.series = s.name;
        dot.dataset.x = String(x);
        dot.dataset.y = String(y);
        const tip = svgElement("title");
        tip.textContent = `${s.name}: ${opts.xLabel} ${formatNumber(x)}: ${formatNumber(y)}`;
        dot.appendChild(tip);
        svg.appendChild(dot);
      }
    }
  });
  if (series.length > 1) {
    let x = margin.left + 6;
    series.forEach((s, index) => {
      const swatch = svgElement("rect", {
        x, y: margin.top + 4, width: 10, height: 10, fill: PALETTE[index % PALETTE.length],
      });
      const name = svgElement("text", { x: x + 13, y: margin.top + 13, class: "legend" });
      name.textContent = s.name;
      svg.appendChild(swatch);
      svg.appendChild(name);
      x += 20 + 6.5 * s.name.length;
    });
  }
  return svg;
}
