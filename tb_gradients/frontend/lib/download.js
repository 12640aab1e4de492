// Downloads of every chart, as TensorBoard's own dashboards offer: the
// canvas as PNG and the data it draws as CSV. Each chart canvas of the tab
// (canvas[data-view]) gets a small PNG / CSV control in its top right
// corner as soon as a view adds it to the page.
//
// CSV follows RFC 4180 (CRLF line ends; fields holding a comma, a quote or
// a line break quoted, quotes doubled). Variable and run names come from
// the log directory: a text field that a spreadsheet would read as a
// formula (starting with =, +, -, @, a tab or a carriage return) and is not
// a number gets a leading single quote.

import {el} from './dom.js';

// Canvases that are not charts of data (the heatmaps' colour scale).
const SKIPPED_VIEWS = new Set(['heatmap-colorbar']);
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

// One CSV field.
export function csvField(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? 'Inf' : '-Inf';
    return String(value);
  }
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && !NUMBER.test(text)) text = `'${text}`;
  if (/[",\r\n]/.test(text)) text = `"${text.replace(/"/g, '""')}"`;
  return text;
}

// Rows (the first one the header) as CSV text.
export function toCsv(rows) {
  return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}

// A series' x and y values (charts.js: `x` / `y`, or `points`).
function coordinates(series) {
  if (series.x) return {xs: series.x, ys: series.y};
  const points = series.points || [];
  return {xs: points.map((p) => p[0]), ys: points.map((p) => p[1])};
}

// Unique column names: a label drawn twice (e.g. a variable's solid and
// dashed curves) is told apart by the legend entry of the same dash
// pattern, else numbered.
function seriesNames(spec) {
  const dashKey = (dash) => JSON.stringify(dash || []);
  const counts = new Map();
  for (const series of spec.series) counts.set(series.label, (counts.get(series.label) || 0) + 1);
  const used = new Set();
  return spec.series.map((series) => {
    let name = String(series.label ?? 'series');
    if (counts.get(series.label) > 1) {
      const entry = (spec.legend || []).find((item) => item.kind !== 'box' && item.kind !== 'vline'
        && dashKey(item.dash) === dashKey(series.dash));
      if (entry) name = `${name} ${entry.label}`;
    }
    let unique = name;
    for (let n = 2; used.has(unique); n++) unique = `${name} (${n})`;
    used.add(unique);
    return unique;
  });
}

// Line / scatter chart: one row per x value, one column per series. Series
// that share their x values (one response's epochs, or a long run's
// buckets, where x repeats for a bucket's min and max) are aligned by
// position; others on the union of their x values.
function lineChartRows(canvas) {
  const spec = canvas.chartSpec;
  const domain = canvas.zoom || null;
  const inView = (x) => !domain || (x >= domain[0] && x <= domain[1]);
  const columns = spec.series.map(coordinates);
  const header = [spec.xLabel || 'x', ...seriesNames(spec)];
  const first = columns[0]?.xs || [];
  const aligned = columns.every(({xs}) => xs.length === first.length && xs.every((x, i) => x === first[i]));
  const rows = [header];
  if (aligned) {
    first.forEach((x, i) => {
      if (inView(x)) rows.push([x, ...columns.map(({ys}) => ys[i] ?? null)]);
    });
    return rows;
  }
  const xs = [...new Set(columns.flatMap((column) => [...column.xs]))].filter(inView).sort((a, b) => a - b);
  const lookups = columns.map(({xs: own, ys}) => {
    const map = new Map();
    own.forEach((x, i) => { if (!map.has(x)) map.set(x, ys[i] ?? null); });
    return map;
  });
  for (const x of xs) rows.push([x, ...lookups.map((map) => (map.has(x) ? map.get(x) : null))]);
  return rows;
}

// Bar chart (one row per category, one column per group).
function barChartRows(canvas) {
  const spec = canvas.chartSpec;
  return [
    [spec.categoryLabel || 'variable', ...spec.groups.map((group) => group.label)],
    ...spec.categories.map((name, index) => [name, ...spec.groups.map((group) => group.values[index] ?? null)]),
  ];
}

// Heatmap: the grid of the channel drawn, one row per pooled row; NaN and
// Inf cells as such.
function heatmapRows(canvas) {
  const {data, channel} = canvas.hover;
  const nan = new Set(channel.nan || []);
  const inf = new Set(channel.inf || []);
  const rows = [['row', ...Array.from({length: data.cols}, (_, c) => `col ${c}`)]];
  for (let r = 0; r < data.rows; r++) {
    const row = [r];
    for (let c = 0; c < data.cols; c++) {
      const index = r * data.cols + c;
      row.push(nan.has(index) ? NaN : inf.has(index) ? Infinity : channel.values[index] ?? null);
    }
    rows.push(row);
  }
  return rows;
}

/** The rows (header first) of what `canvas` draws, or null. */
export function chartRows(canvas) {
  const spec = canvas.chartSpec;
  if (spec && Array.isArray(spec.series)) return lineChartRows(canvas);
  if (spec && Array.isArray(spec.groups)) return barChartRows(canvas);
  if (canvas.hover && canvas.hover.data && canvas.hover.channel) return heatmapRows(canvas);
  return null;
}

// "layer-stats-tanh_train-mean": a file name from the canvas' view, run and
// what it draws.
export function fileStem(canvas) {
  const {view, run, stat, variable, panel, axis} = canvas.dataset;
  const parts = [view, run, variable, panel, stat || (run ? null : axis)].filter(Boolean);
  return parts.join('-').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._-]+/, '').slice(0, 150) || 'chart';
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el('a', {attrs: {href: url, download: name}});
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function downloadPng(canvas) {
  canvas.toBlob((blob) => {
    if (blob) save(blob, `${fileStem(canvas)}.png`);
  }, 'image/png');
}

export function downloadCsv(canvas) {
  const rows = chartRows(canvas) || [[]];
  save(new Blob([toCsv(rows)], {type: 'text/csv;charset=utf-8'}), `${fileStem(canvas)}.csv`);
}

// Puts `canvas` in a frame with its download control.
function decorate(canvas) {
  if (canvas.closest('.chart-frame') || SKIPPED_VIEWS.has(canvas.dataset.view)) return;
  const button = (format, action) => el('button', {
    text: format, className: 'download-button',
    title: `Download this chart as ${format}`,
    attrs: {type: 'button', 'aria-label': `Download ${canvas.getAttribute('aria-label') || 'chart'} as ${format}`},
    dataset: {download: format.toLowerCase()},
    on: {click: () => action(canvas)},
  });
  const frame = el('div', {className: 'chart-frame'});
  canvas.replaceWith(frame);
  frame.append(canvas, el('div', {className: 'chart-downloads'}, [
    button('PNG', downloadPng), button('CSV', downloadCsv)]));
}

/** Gives every chart canvas added under `root` its download control. */
export function installDownloads(root) {
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    if (node.matches('canvas[data-view]')) decorate(node);
    else node.querySelectorAll('canvas[data-view]').forEach(decorate);
  };
  scan(root);
  new MutationObserver((records) => {
    for (const record of records) record.addedNodes.forEach(scan);
  }).observe(root, {childList: true, subtree: true});
}
