// Canvas 2-D drawing primitives shared by the views: scales, ticks, axes,
// legends, line / scatter / bar charts and the hover readout. No view logic
// lives here; a view turns API data into a chart spec and calls a draw
// function.

import {HATCH_COLOR, MASKED_COLOR} from './colors.js';
import {hideTooltip, showTooltip} from './dom.js';

export const BACKGROUND = '#ffffff';
const AXIS_COLOR = '#5f6368';
const GRID_COLOR = '#ebebeb';
const TEXT_COLOR = '#202124';
const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const TITLE_FONT = '500 12px Roboto, "Helvetica Neue", Arial, sans-serif';
const LEGEND_ROW = 16;

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

export function formatNumber(value) {
  if (value === null || value === undefined) return 'n/a';
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Inf' : '-Inf';
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

// A canvas that knows which view it belongs to (tests and the benchmark find
// views through data-view) and its CSS size.
export function createCanvas(view, width, height, label) {
  const canvas = document.createElement('canvas');
  canvas.dataset.view = view;
  canvas.setAttribute('role', 'img');
  if (label) canvas.setAttribute('aria-label', label);
  sizeCanvas(canvas, width, height);
  return canvas;
}

export function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.cssWidth = width;
  canvas.cssHeight = height;
}

// Clears the canvas and returns a context that draws in CSS pixels.
export function context(canvas) {
  const ratio = canvas.width / canvas.cssWidth;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(0, 0, canvas.cssWidth, canvas.cssHeight);
  ctx.font = FONT;
  ctx.textBaseline = 'alphabetic';
  return ctx;
}

// ---------------------------------------------------------------- scales

// Smallest and largest usable value; on a log axis only positive values
// count. Returns null when there is nothing to draw.
export function extent(values, log = false) {
  let min = Infinity;
  let max = -Infinity;
  for (const value of values) {
    if (!isNumber(value) || (log && value <= 0)) continue;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return min <= max ? [min, max] : null;
}

export function mergeExtents(extents) {
  const usable = extents.filter(Boolean);
  if (!usable.length) return null;
  return [Math.min(...usable.map((e) => e[0])), Math.max(...usable.map((e) => e[1]))];
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const fraction = raw / power;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

function linearTicks(min, max, count = 5, integer = false) {
  if (!(max > min)) return [min];
  let step = niceStep(max - min, count);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  const first = Math.ceil(min / step - 1e-9) * step;
  for (let tick = first; tick <= max + step * 1e-9; tick += step) {
    ticks.push(Math.abs(tick) < step * 1e-9 ? 0 : tick);
  }
  return ticks;
}

function logTicks(min, max, count = 6) {
  const low = Math.floor(Math.log10(min) + 1e-9);
  const high = Math.ceil(Math.log10(max) - 1e-9);
  const stride = Math.max(1, Math.ceil((high - low) / count));
  const ticks = [];
  for (let power = low; power <= high; power += stride) ticks.push(Math.pow(10, power));
  return ticks;
}

// Expands a data extent to a drawable domain (nice bounds, never empty).
export function niceDomain(range, log = false, includeZero = false) {
  if (!range) return log ? [0.1, 10] : [0, 1];
  let [min, max] = range;
  if (log) {
    let low = Math.floor(Math.log10(min));
    let high = Math.ceil(Math.log10(max));
    if (high === low) {
      low -= 1;
      high += 1;
    }
    return [Math.pow(10, low), Math.pow(10, high)];
  }
  if (includeZero) {
    min = Math.min(0, min);
    max = Math.max(0, max);
  }
  if (max === min) {
    const pad = max === 0 ? 1 : Math.abs(max) * 0.5;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, 5);
  return [Math.floor(min / step) * step, Math.ceil(max / step) * step];
}

export function scale(domain, range, log = false) {
  const [d0, d1] = log ? domain.map(Math.log10) : domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  const map = (value) => {
    const v = log ? Math.log10(value) : value;
    return r0 + ((v - d0) / span) * (r1 - r0);
  };
  map.domain = domain;
  map.log = log;
  // Pixel → value (hover readouts of heatmaps).
  map.inverse = (pixel) => {
    const v = d0 + ((pixel - r0) / ((r1 - r0) || 1)) * span;
    return log ? Math.pow(10, v) : v;
  };
  return map;
}

function tickLabel(value, log) {
  if (log) {
    const power = Math.round(Math.log10(value));
    return power >= -2 && power <= 3 ? String(Number(value.toPrecision(1))) : `1e${power}`;
  }
  return formatNumber(value);
}

// Grey diagonal hatching over a rectangle: the mark of masked timesteps
// (valid = 0), which must not read as a zero gradient.
export function hatch(ctx, left, top, width, height) {
  if (width <= 0 || height <= 0) return;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  ctx.fillStyle = MASKED_COLOR;
  ctx.fillRect(left, top, width, height);
  ctx.strokeStyle = HATCH_COLOR;
  ctx.lineWidth = 1;
  ctx.setLineDash([]);
  ctx.beginPath();
  const step = 6;
  for (let offset = -height; offset < width; offset += step) {
    ctx.moveTo(left + offset, top + height);
    ctx.lineTo(left + offset + height, top);
  }
  ctx.stroke();
  ctx.restore();
}

// ---------------------------------------------------------------- legend

// Lays legend entries out in rows that fit the width; returns the height.
function layoutLegend(ctx, entries, width) {
  const rows = [[]];
  let x = 0;
  for (const entry of entries) {
    const itemWidth = 26 + ctx.measureText(entry.label).width + 14;
    if (x + itemWidth > width && rows[rows.length - 1].length) {
      rows.push([]);
      x = 0;
    }
    rows[rows.length - 1].push({entry, x});
    x += itemWidth;
  }
  return rows;
}

function drawLegendSwatch(ctx, entry, x, y) {
  ctx.save();
  ctx.strokeStyle = entry.color;
  ctx.fillStyle = entry.color;
  ctx.lineWidth = entry.width || 2;
  if (entry.kind === 'dot') {
    ctx.beginPath();
    ctx.arc(x + 10, y, 3, 0, 2 * Math.PI);
    ctx.fill();
  } else if (entry.kind === 'box') {
    ctx.fillRect(x + 3, y - 5, 16, 10);
  } else if (entry.kind === 'band') {
    ctx.globalAlpha = 0.25;
    ctx.fillRect(x, y - 5, 20, 10);
  } else if (entry.kind === 'hatch') {
    hatch(ctx, x, y - 5, 20, 10);
  } else if (entry.kind === 'vline') {
    ctx.setLineDash(entry.dash || []);
    ctx.beginPath();
    ctx.moveTo(x + 10, y - 6);
    ctx.lineTo(x + 10, y + 6);
    ctx.stroke();
  } else {
    ctx.setLineDash(entry.dash || []);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 20, y);
    ctx.stroke();
  }
  ctx.restore();
}

function drawLegend(ctx, rows, left, top) {
  ctx.fillStyle = TEXT_COLOR;
  rows.forEach((row, index) => {
    const y = top + index * LEGEND_ROW + LEGEND_ROW / 2;
    for (const {entry, x} of row) {
      drawLegendSwatch(ctx, entry, left + x, y);
      ctx.fillStyle = TEXT_COLOR;
      ctx.textBaseline = 'middle';
      ctx.fillText(entry.label, left + x + 26, y);
    }
  });
  ctx.textBaseline = 'alphabetic';
}

// ---------------------------------------------------------------- frame

// Title, legend, grid, axes and tick labels. Returns the plot area and the
// x / y scales for the caller to draw data with. `yReverse` puts the start
// of the y domain at the top (rows of a heatmap); `yInteger` keeps integer
// y ticks; `rightMargin` leaves room, e.g. for a colour bar.
export function drawFrame(ctx, spec, width, height) {
  const margin = {left: 62, right: spec.rightMargin || 14, top: 8, bottom: spec.bottomMargin || 38};
  let top = margin.top;
  if (spec.title) {
    ctx.font = TITLE_FONT;
    ctx.fillStyle = TEXT_COLOR;
    ctx.fillText(spec.title, margin.left, top + 12);
    ctx.font = FONT;
    top += 20;
  }
  const legendRows = spec.legend && spec.legend.length
    ? layoutLegend(ctx, spec.legend, width - margin.left - margin.right)
    : [];
  drawLegend(ctx, legendRows, margin.left, top);
  top += legendRows.length * LEGEND_ROW + (legendRows.length ? 6 : 4);

  const area = {
    left: margin.left,
    right: width - margin.right,
    top,
    bottom: height - margin.bottom,
  };
  area.width = area.right - area.left;
  area.height = area.bottom - area.top;

  const x = scale(spec.xDomain, [area.left, area.right], false);
  const y = scale(spec.yDomain, spec.yReverse ? [area.top, area.bottom] : [area.bottom, area.top], spec.yLog);
  const yTicks = spec.yLog
    ? logTicks(spec.yDomain[0], spec.yDomain[1])
    : linearTicks(spec.yDomain[0], spec.yDomain[1], Math.max(2, Math.floor(area.height / 40)), spec.yInteger);

  ctx.lineWidth = 1;
  ctx.strokeStyle = GRID_COLOR;
  ctx.fillStyle = AXIS_COLOR;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const tick of yTicks) {
    const py = Math.round(y(tick)) + 0.5;
    if (py < area.top - 1 || py > area.bottom + 1) continue;
    ctx.beginPath();
    ctx.moveTo(area.left, py);
    ctx.lineTo(area.right, py);
    ctx.stroke();
    ctx.fillText(tickLabel(tick, spec.yLog), area.left - 6, py);
  }

  if (!spec.xCategories) {
    const xTicks = linearTicks(spec.xDomain[0], spec.xDomain[1],
      Math.max(2, Math.floor(area.width / 70)), spec.xInteger);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const tick of xTicks) {
      const px = Math.round(x(tick)) + 0.5;
      if (px < area.left - 1 || px > area.right + 1) continue;
      ctx.beginPath();
      ctx.moveTo(px, area.bottom);
      ctx.lineTo(px, area.bottom + 4);
      ctx.strokeStyle = AXIS_COLOR;
      ctx.stroke();
      ctx.fillText(formatNumber(tick), px, area.bottom + 6);
    }
  }

  ctx.strokeStyle = AXIS_COLOR;
  ctx.beginPath();
  ctx.moveTo(area.left + 0.5, area.top);
  ctx.lineTo(area.left + 0.5, area.bottom + 0.5);
  ctx.lineTo(area.right, area.bottom + 0.5);
  ctx.stroke();

  ctx.fillStyle = TEXT_COLOR;
  if (spec.xLabel) {
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(spec.xLabel, (area.left + area.right) / 2, height - 2);
  }
  if (spec.yLabel) {
    ctx.save();
    ctx.translate(12, (area.top + area.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(spec.yLabel, 0, 0);
    ctx.restore();
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'alphabetic';
  return {area, x, y};
}

function usable(value, log) {
  return isNumber(value) && (!log || value > 0);
}

// ---------------------------------------------------------------- hover

// Each canvas keeps the hit targets of its last drawing; one listener pair
// per canvas turns the nearest target into a tooltip.
export function installHover(canvas, targets) {
  canvas.hoverTargets = targets;
  if (canvas.hoverInstalled) return;
  canvas.hoverInstalled = true;
  canvas.addEventListener('mousemove', (event) => {
    const box = canvas.getBoundingClientRect();
    const px = event.clientX - box.left;
    const py = event.clientY - box.top;
    let best = null;
    let bestDistance = Infinity;
    for (const target of canvas.hoverTargets || []) {
      const distance = target.hit(px, py);
      if (distance < bestDistance) {
        bestDistance = distance;
        best = target;
      }
    }
    if (best && bestDistance <= 12 && !canvas.dragging) {
      showTooltip(best.lines(), event.clientX, event.clientY);
    } else {
      hideTooltip();
    }
  });
  canvas.addEventListener('mouseleave', hideTooltip);
}

function pointTarget(px, py, lines) {
  return {hit: (mx, my) => Math.hypot(mx - px, my - py), lines};
}

// One hover target for a whole series whose pixels are sorted by x: a
// binary search finds the points near the pointer, so thousands of points
// cost no object each (unsorted series get one target per point).
function seriesTarget(pixels, describe) {
  const points = pixels.filter(Boolean);
  for (let i = 1; i < points.length; i++) {
    if (points[i][0] < points[i - 1][0]) {
      return points.map((p) => pointTarget(p[0], p[1], () => describe(p[2], p[3])));
    }
  }
  let found = null;
  const hit = (mx, my) => {
    let low = 0;
    let high = points.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (points[middle][0] < mx) low = middle + 1;
      else high = middle;
    }
    let best = Infinity;
    found = null;
    for (let i = low - 1; i >= 0 && mx - points[i][0] <= best; i--) {
      const distance = Math.hypot(mx - points[i][0], my - points[i][1]);
      if (distance < best) [best, found] = [distance, points[i]];
    }
    for (let i = low; i < points.length && points[i][0] - mx <= best; i++) {
      const distance = Math.hypot(mx - points[i][0], my - points[i][1]);
      if (distance < best) [best, found] = [distance, points[i]];
    }
    return best;
  };
  return points.length ? [{hit, lines: () => describe(found[2], found[3])}] : [];
}

// At most two points per pixel column (the lowest and the highest, in
// their order) of a line sorted by x: the drawn shape is the same, the
// path is short. Gaps (null) are kept. Allocates nothing per point.
export function decimate(pixels) {
  const out = [];
  let column = null;
  let low = -1;
  let high = -1;
  const flush = () => {
    if (column === null) return;
    const kept = [low, high].sort((a, b) => a - b);
    kept.forEach((index, i) => {
      if (!i || index !== kept[i - 1]) out.push(pixels[index]);
    });
    column = null;
  };
  for (let index = 0; index < pixels.length; index++) {
    const p = pixels[index];
    if (!p) {
      flush();
      if (out.length && out[out.length - 1] !== null) out.push(null);
      continue;
    }
    const c = Math.floor(p[0]);
    if (c !== column) {
      flush();
      column = c;
      low = high = index;
      continue;
    }
    if (p[1] < pixels[low][1]) low = index;
    if (p[1] > pixels[high][1]) high = index;
  }
  flush();
  return out;
}

// ---------------------------------------------------------------- zoom

// Drag across a line chart to zoom into that x range, double-click to go
// back to the whole range. Every line chart has it; the chart's current
// x domain and label are on the canvas (data-x-domain, data-x-label) for
// tests and tools.
function installZoom(canvas) {
  if (canvas.zoomInstalled) return;
  canvas.zoomInstalled = true;
  let start = null;
  let snapshot = null;
  const position = (event) => {
    const box = canvas.getBoundingClientRect();
    const {left, right} = canvas.plotArea;
    return Math.min(right, Math.max(left, event.clientX - box.left));
  };
  const ctxOf = () => {
    const ctx = canvas.getContext('2d');
    const ratio = canvas.width / canvas.cssWidth;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  };
  canvas.addEventListener('mousedown', (event) => {
    if (event.button !== 0 || !canvas.plotArea) return;
    const box = canvas.getBoundingClientRect();
    const px = event.clientX - box.left;
    const py = event.clientY - box.top;
    const {left, right, top, bottom} = canvas.plotArea;
    if (px < left || px > right || py < top || py > bottom) return;
    event.preventDefault();
    start = px;
    snapshot = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    canvas.dragging = true;
    hideTooltip();
    // Listened to on the window while dragging only, so that a release
    // outside the canvas ends the drag too.
    window.addEventListener('mousemove', move);
    window.addEventListener('mouseup', release);
  });
  function move(event) {
    if (start === null) return;
    const now = position(event);
    const ctx = canvas.getContext('2d');
    ctx.putImageData(snapshot, 0, 0);
    const draw = ctxOf();
    draw.fillStyle = 'rgba(66, 133, 244, 0.18)';
    const {top, bottom} = canvas.plotArea;
    draw.fillRect(Math.min(start, now), top, Math.abs(now - start), bottom - top);
  }
  function release(event) {
    window.removeEventListener('mousemove', move);
    window.removeEventListener('mouseup', release);
    if (start === null) return;
    const end = position(event);
    const from = start;
    start = null;
    canvas.dragging = false;
    canvas.getContext('2d').putImageData(snapshot, 0, 0);
    snapshot = null;
    if (Math.abs(end - from) < 4) return;
    const x = canvas.xScale;
    const low = x.inverse(Math.min(from, end));
    const high = x.inverse(Math.max(from, end));
    if (high > low) {
      canvas.zoom = [low, high];
      const base = canvas.baseSpec;
      drawLineChart(canvas, base, true);
      loadZoomed(canvas, base);
    }
  }
  canvas.addEventListener('dblclick', () => {
    if (!canvas.zoom) return;
    canvas.zoom = null;
    canvas.zoomTicket = (canvas.zoomTicket || 0) + 1;
    drawLineChart(canvas, canvas.baseSpec);
  });
}

// A chart whose spec has `zoomData(range)` (a long run's envelope) is
// redrawn with the series it resolves to for the zoomed x range, if it is
// still zoomed there when they arrive. data-zoom-loading tells tests.
function loadZoomed(canvas, base) {
  if (!base.zoomData) return;
  const ticket = canvas.zoomTicket = (canvas.zoomTicket || 0) + 1;
  const range = canvas.zoom;
  canvas.dataset.zoomLoading = 'true';
  base.zoomData(range).then((zoomed) => {
    if (ticket !== canvas.zoomTicket) return;
    drawLineChart(canvas, {...base, ...zoomed}, true);
  }, (error) => {
    console.warn('Zoomed data failed:', error);
  }).finally(() => {
    if (ticket === canvas.zoomTicket) canvas.dataset.zoomLoading = 'false';
  });
}

// ---------------------------------------------------------------- charts

/**
 * Line / scatter chart.
 *
 * spec: {title, xLabel, yLabel, xDomain, yDomain, yLog, xInteger, legend,
 *   series: [{label, color, dash, width, points: [[x, y]] (or x: [..] and
 *     y: [..], cheaper for long series), marker: 'tick' | 'dot' | null,
 *     scatter: bool, describe: (x, y) => [lines]}],
 *   segments: [{x, y0, y1, color, dash, describe}],   // vertical segments
 *   vlines: [{x, color, dash}],                       // full-height markers
 *   hlines: [{y, color, dash}],                       // full-width markers
 *   bands: [{color, points: [[x, low, high]]}],       // shaded spreads
 *   hatches: [{x0, x1}]}                              // masked x ranges
 */
// A series' x and y values, from `x` / `y` or from `points`.
function coordinates(series) {
  if (series.x) return {xs: series.x, ys: series.y};
  return {xs: series.points.map((p) => p[0]), ys: series.points.map((p) => p[1])};
}

// `zoomedDraw`: a redraw of the zoomed chart (the spec it was drawn with
// first stays the one a double-click returns to). spec.resolution
// ('full' / 'envelope') is shown as data-resolution, and the number of
// points of the first series in view as data-points-in-view.
export function drawLineChart(canvas, spec, zoomedDraw = false) {
  const width = canvas.cssWidth;
  const height = canvas.cssHeight;
  const ctx = context(canvas);
  canvas.chartSpec = spec;
  if (!zoomedDraw) {
    canvas.baseSpec = spec;
    canvas.zoomTicket = (canvas.zoomTicket || 0) + 1;
  }
  canvas.dataset.resolution = spec.resolution || 'full';
  const xDomain = canvas.zoom || spec.xDomain;
  const {area, x, y} = drawFrame(ctx, {...spec, xDomain}, width, height);
  canvas.plotArea = area;
  canvas.xScale = x;
  canvas.dataset.xLabel = spec.xLabel || '';
  canvas.dataset.xDomain = xDomain.map((value) => Number(value.toPrecision(6))).join(',');
  canvas.dataset.zoomed = canvas.zoom ? 'true' : 'false';
  installZoom(canvas);
  const inView = (vx) => vx >= xDomain[0] && vx <= xDomain[1];
  const targets = [];
  const clampY = (value) => Math.min(area.bottom, Math.max(area.top, value));

  ctx.save();
  ctx.beginPath();
  ctx.rect(area.left, area.top - 4, area.width + 4, area.height + 8);
  ctx.clip();

  for (const span of spec.hatches || []) {
    const x0 = Math.max(area.left + 1, x(span.x0));
    const x1 = Math.min(area.right, x(span.x1));
    hatch(ctx, x0, area.top, x1 - x0, area.height);
  }

  // A band is a polygon between its low and high edges, broken where
  // either is missing (a gap, like a line's).
  for (const band of spec.bands || []) {
    ctx.fillStyle = band.color;
    ctx.globalAlpha = band.alpha || 0.18;
    let stretch = [];
    const flush = () => {
      if (stretch.length > 1) {
        ctx.beginPath();
        stretch.forEach(([px, lowY], i) => (i ? ctx.lineTo(px, lowY) : ctx.moveTo(px, lowY)));
        for (let i = stretch.length - 1; i >= 0; i--) ctx.lineTo(stretch[i][0], stretch[i][2]);
        ctx.closePath();
        ctx.fill();
      }
      stretch = [];
    };
    for (const [vx, low, high] of band.points) {
      if (usable(vx, false) && usable(low, spec.yLog) && usable(high, spec.yLog)) {
        stretch.push([x(vx), clampY(y(low)), clampY(y(high))]);
      } else {
        flush();
      }
    }
    flush();
    ctx.globalAlpha = 1;
  }

  for (const line of spec.hlines || []) {
    if (!usable(line.y, spec.yLog)) continue;
    const py = Math.round(y(line.y)) + 0.5;
    ctx.strokeStyle = line.color || '#9e9e9e';
    ctx.lineWidth = 1;
    ctx.setLineDash(line.dash || []);
    ctx.beginPath();
    ctx.moveTo(area.left, py);
    ctx.lineTo(area.right, py);
    ctx.stroke();
  }
  ctx.setLineDash([]);

  for (const line of spec.vlines || []) {
    const px = Math.round(x(line.x)) + 0.5;
    ctx.strokeStyle = line.color || '#bdbdbd';
    ctx.lineWidth = 1;
    ctx.setLineDash(line.dash || [3, 3]);
    ctx.beginPath();
    ctx.moveTo(px, area.top);
    ctx.lineTo(px, area.bottom);
    ctx.stroke();
  }

  // Segments of one style go into one path (thousands for long runs).
  let segmentStyle = null;
  ctx.lineWidth = 1.5;
  for (const segment of spec.segments || []) {
    if (!usable(segment.y0, spec.yLog) || !usable(segment.y1, spec.yLog) || !inView(segment.x)) continue;
    const px = x(segment.x);
    const p0 = clampY(y(segment.y0));
    const p1 = clampY(y(segment.y1));
    const style = `${segment.color || '#9e9e9e'}|${(segment.dash || [4, 3]).join(',')}`;
    if (style !== segmentStyle) {
      if (segmentStyle !== null) ctx.stroke();
      segmentStyle = style;
      ctx.strokeStyle = segment.color || '#9e9e9e';
      ctx.setLineDash(segment.dash || [4, 3]);
      ctx.beginPath();
    }
    ctx.moveTo(px, p0);
    ctx.lineTo(px, p1);
    if (segment.describe) {
      targets.push({
        hit: (mx, my) => (my >= Math.min(p0, p1) - 4 && my <= Math.max(p0, p1) + 4)
          ? Math.abs(mx - px) + 3 : Infinity,
        lines: segment.describe,
      });
    }
  }
  if (segmentStyle !== null) ctx.stroke();
  ctx.setLineDash([]);

  for (const series of spec.series) {
    ctx.strokeStyle = series.color;
    ctx.fillStyle = series.color;
    ctx.lineWidth = series.width || 1.75;
    const all = [];
    const {xs, ys} = coordinates(series);
    for (let i = 0; i < xs.length; i++) {
      const vx = xs[i];
      const vy = ys[i];
      all.push(usable(vx, false) && usable(vy, spec.yLog) ? [x(vx), y(vy), vx, vy] : null);
    }
    // Zoomed in: the points in view and, for lines, their neighbours
    // outside it (the line leaves the plot area towards them).
    const pixels = canvas.zoom
      ? all.filter((p, i) => !p || inView(p[2]) || (!series.scatter && (
        (all[i - 1] && inView(all[i - 1][2])) || (all[i + 1] && inView(all[i + 1][2])))))
      : all;
    const drawn = !series.scatter && pixels.length > 2 * area.width ? decimate(pixels) : pixels;
    // Long lines are drawn as hairlines, which the canvas rasterises much
    // faster than wider strokes (hundreds of series of thousands of points).
    if (drawn.length > 400) ctx.lineWidth = Math.min(ctx.lineWidth, 1);
    if (series.scatter) {
      const radius = series.radius || 2;
      ctx.beginPath();
      for (const p of pixels) {
        if (!p) continue;
        ctx.moveTo(p[0] + radius, p[1]);
        ctx.arc(p[0], p[1], radius, 0, 2 * Math.PI);
      }
      ctx.fill();
    } else {
      ctx.setLineDash(series.dash || []);
      ctx.beginPath();
      let drawing = false;
      for (const p of drawn) {
        if (!p) {
          drawing = false;
          continue;
        }
        if (drawing) ctx.lineTo(p[0], p[1]);
        else ctx.moveTo(p[0], p[1]);
        drawing = true;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      const markers = drawn.length <= 200 ? drawn : [];
      for (const p of markers) {
        if (!p) continue;
        ctx.beginPath();
        if (series.marker === 'tick') {
          ctx.moveTo(p[0], p[1] - 4);
          ctx.lineTo(p[0], p[1] + 4);
          ctx.stroke();
        } else if (series.marker === 'dot' || pixels.length === 1) {
          ctx.arc(p[0], p[1], 2.5, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
    if (series === spec.series[0]) canvas.dataset.pointsInView = String(pixels.filter((p) => p && inView(p[2])).length);
    targets.push(...seriesTarget(pixels.filter((p) => !p || inView(p[2])), (vx, vy) => (series.describe
      ? series.describe(vx, vy)
      : [series.label, `${spec.xLabel || 'x'} ${formatNumber(vx)}`,
         `${spec.yLabel || 'y'}: ${formatNumber(vy)}`])));
  }
  ctx.restore();

  if (!spec.series.some((s) => {
    const {xs, ys} = coordinates(s);
    return xs.some((vx, i) => usable(vx, false) && usable(ys[i], spec.yLog));
  })) {
    ctx.fillStyle = AXIS_COLOR;
    ctx.textAlign = 'center';
    ctx.fillText(spec.emptyText || 'No finite values to plot',
      (area.left + area.right) / 2, (area.top + area.bottom) / 2);
    ctx.textAlign = 'left';
  }
  installHover(canvas, targets);
}

/**
 * Grouped bar chart over categories (e.g. variables in input → output order).
 *
 * spec: {title, yLabel, yDomain, yLog, legend, categories: [name],
 *   groups: [{label, color, values: [per category]}], describe(index)}
 */
export function drawBarChart(canvas, spec) {
  const width = canvas.cssWidth;
  const height = canvas.cssHeight;
  const ctx = context(canvas);
  canvas.chartSpec = spec;  // what it draws (download.js: CSV)
  const count = Math.max(1, spec.categories.length);
  const frameSpec = {...spec, xDomain: [0, count], xCategories: true};
  const {area, x, y} = drawFrame(ctx, frameSpec, width, height);
  const slot = area.width / count;
  const barWidth = Math.max(1, (slot * 0.8) / spec.groups.length);
  const targets = [];

  spec.groups.forEach((group, g) => {
    ctx.fillStyle = group.color;
    group.values.forEach((value, index) => {
      if (!usable(value, spec.yLog)) return;
      const left = area.left + index * slot + slot * 0.1 + g * barWidth;
      const top = Math.max(area.top, Math.min(area.bottom, y(value)));
      ctx.fillRect(left, top, Math.max(1, barWidth - (barWidth > 3 ? 1 : 0)), area.bottom - top);
    });
  });

  // Missing / non-finite values get a marker so that a gap is not mistaken
  // for a vanishing gradient.
  ctx.fillStyle = '#d93025';
  ctx.textAlign = 'center';
  spec.categories.forEach((_, index) => {
    const missing = spec.groups.every((group) => !isNumber(group.values[index]));
    if (missing) ctx.fillText('×', area.left + (index + 0.5) * slot, area.bottom - 4);
  });

  // Category labels, rotated; thinned out when they would overlap.
  ctx.fillStyle = AXIS_COLOR;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  const every = Math.max(1, Math.ceil(12 / slot));
  spec.categories.forEach((name, index) => {
    if (index % every) return;
    const cx = area.left + (index + 0.5) * slot;
    ctx.save();
    ctx.translate(cx, area.bottom + 6);
    ctx.rotate(-Math.PI / 4);
    const text = name.length > 22 ? `…${name.slice(-21)}` : name;
    ctx.fillText(text, 0, 0);
    ctx.restore();
  });
  ctx.textAlign = 'left';
  ctx.textBaseline = 'alphabetic';

  spec.categories.forEach((_, index) => {
    const left = area.left + index * slot;
    targets.push({
      hit: (mx, my) => (mx >= left && mx < left + slot && my >= area.top && my <= area.bottom + 40)
        ? 0 : Infinity,
      lines: () => spec.describe(index),
    });
  });
  installHover(canvas, targets);
  return {x, y, area};
}

// Message drawn inside a canvas (keeps the layout stable when a panel has
// no data).
export function drawMessage(canvas, message) {
  const ctx = context(canvas);
  canvas.chartSpec = null;
  ctx.fillStyle = AXIS_COLOR;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.fillText(message, canvas.cssWidth / 2, canvas.cssHeight / 2);
  installHover(canvas, []);
}
