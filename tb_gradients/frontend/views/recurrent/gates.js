// Per-gate weight gradients of an LSTM / GRU layer (./gates, ./gate_heatmap):
// Keras fuses the gates of each weight side by side, so a gate that stops
// learning (a saturated forget gate, a dead reset gate) hides inside the
// variable's statistics. One small chart per fused weight (role: kernel,
// recurrent_kernel, bias; and direction), one line per gate over epochs.

import {BACKGROUND, createCanvas, drawLineChart, extent, formatNumber, installHover} from '../../lib/charts.js';
import {MISSING_COLOR, paletteColor, viridis} from '../../lib/colors.js';
import {el} from '../../lib/dom.js';

const CHART_HEIGHT = 190;
const MIN_CHART_WIDTH = 210;
const GATE_HEATMAP_HEIGHT = 90;
const MIN_EXTENT = 8;
// Gate heatmaps colour log10(value / scale) over this many decades: the
// scale is the largest cell of every epoch, often an early one, next to
// which later epochs would be uniformly dark on a linear scale.
export const GATE_DECADES = 4;

// Gate i keeps colour C<i> in every chart and legend (LSTM: input, forget,
// cell, output; GRU: update, reset, candidate).
const gateColor = (index) => paletteColor(index);

// The source whose gates a run shows: the tab's when the layer has gates
// for it, else the other one. Null when it has none.
export function gateSource(layer, source) {
  const gates = (layer && layer.gates) || {};
  if (gates[source]) return source;
  return ['training', 'probe'].find((other) => gates[other]) || null;
}

// Column `stat` of every (row, gate) over the epochs: [row][gate][epoch].
function gateColumns(data, stat) {
  const index = data.stats.indexOf(stat);
  return data.rows.map((_, row) => data.gates.map((__, gate) =>
    data.values.map((epochValues) => epochValues?.[row]?.[gate]?.[index] ?? null)));
}

// Extent of one statistic over every row, gate and epoch.
export function gateExtent(data, stat, log) {
  return extent(gateColumns(data, stat).flat(2), log);
}

// HTML legend of a run's gates (colour = gate).
function gateLegend(gates) {
  const items = gates.map((gate, index) => {
    const swatch = el('span', {className: 'swatch'});
    swatch.style.background = gateColor(index);
    return el('span', {className: 'legend-item'}, [swatch, el('span', {text: gate})]);
  });
  return el('div', {className: 'legend'}, items);
}

/**
 * Builds one chart per fused weight of a run's ./gates body in `container`;
 * returns draw(epoch) which (re)draws them with a marker at `epoch`.
 *
 * options: {run, source, layer, stat, log, yDomain, width}
 */
export function gateCharts(container, data, options) {
  const columns = gateColumns(data, options.stat);
  const perRow = Math.max(1, Math.min(data.rows.length, Math.floor(options.width / MIN_CHART_WIDTH)));
  const chartWidth = Math.floor((options.width - 8 * (perRow - 1)) / perRow);
  const grid = el('div', {className: 'chart-grid'});
  grid.style.gridTemplateColumns = `repeat(${perRow}, max-content)`;
  container.append(gateLegend(data.gates), grid);
  const charts = data.rows.map((row, r) => {
    const title = `${row.direction} ${row.role}`;
    const canvas = createCanvas('gates', chartWidth, CHART_HEIGHT, `${options.stat} per gate of ${row.variable}`);
    canvas.dataset.run = options.run;
    canvas.dataset.variable = row.variable;
    grid.append(canvas);
    return {canvas, row, r, title};
  });
  const multipleDirections = new Set(data.rows.map((row) => row.direction)).size > 1;
  return function draw(epoch) {
    for (const {canvas, row, r, title} of charts) {
      drawLineChart(canvas, {
        title: multipleDirections ? title : row.role,
        xLabel: 'epoch', xInteger: true,
        xDomain: [data.epochs[0] ?? 0, Math.max((data.epochs[0] ?? 0) + 1, data.epochs[data.epochs.length - 1] ?? 1)],
        yDomain: options.yDomain, yLog: options.log,
        vlines: epoch === null || epoch === undefined ? [] : [{x: epoch, color: '#9e9e9e', dash: [3, 3]}],
        series: data.gates.map((gate, g) => ({
          label: gate, color: gateColor(g), marker: data.epochs.length <= 30 ? 'dot' : null,
          points: data.epochs.map((e, i) => [e, columns[r][g][i]]),
          describe: (x, y) => [row.variable, `${options.run}, ${options.source} source, epoch ${x}`,
            `${gate} gate ${options.stat}: ${formatNumber(y)}`],
        })),
      });
    }
  };
}

// Pixel size of a rows × cols gate plane drawn into at most width × height.
function planeSize(rows, cols, width, height) {
  const cell = Math.min(width / cols, height / rows);
  return {
    width: Math.max(MIN_EXTENT, Math.round(cols * cell)),
    height: Math.max(MIN_EXTENT, Math.round(rows * cell)),
  };
}

// One fused weight's ./gate_heatmap body: a strip of per-gate heatmaps,
// each cell's mean |g| divided by the scale (largest cell over all epochs
// and gates), log colours, so gates and epochs compare by colour.
export function drawGateHeatmaps(container, data, options) {
  const gateWidth = Math.floor((options.width - 6 * (data.gates.length - 1)) / data.gates.length);
  const size = planeSize(data.rows, data.cols, gateWidth, GATE_HEATMAP_HEIGHT);
  const strip = el('div', {className: 'heatmap-row'});
  data.gates.forEach((gate, g) => {
    const canvas = createCanvas('gate-heatmap', size.width, size.height, `${gate} gate of ${data.variable}`);
    canvas.dataset.run = options.run;
    canvas.dataset.variable = data.variable;
    const holder = el('div', {className: 'heatmap-cell'}, [el('div', {className: 'muted', text: gate}), canvas]);
    holder.style.width = `${gateWidth}px`;
    strip.append(holder);
    drawPlane(canvas, data, g, options.run);
  });
  container.append(strip);
}

function drawPlane(canvas, data, gate, run) {
  const {rows, cols, scale} = data;
  const values = data.values[gate] || [];
  const image = new ImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const value = values[i];
    const ratio = scale > 0 && typeof value === 'number' ? value / scale : 0;
    const rgb = typeof value === 'number'
      ? viridis(ratio > 0 ? 1 + Math.log10(ratio) / GATE_DECADES : 0) : MISSING_COLOR;
    image.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  const cells = document.createElement('canvas');
  cells.width = cols;
  cells.height = rows;
  cells.getContext('2d').putImageData(image, 0, 0);
  const ctx = canvas.getContext('2d');
  const ratio = canvas.width / canvas.cssWidth;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(0, 0, canvas.cssWidth, canvas.cssHeight);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, 0, 0, canvas.cssWidth, canvas.cssHeight);
  const [blockRows, blockCols] = data.block || [1, 1];
  installHover(canvas, [{
    hit: (mx, my) => {
      canvas.hoverAt = [mx, my];
      return mx >= 0 && my >= 0 && mx <= canvas.cssWidth && my <= canvas.cssHeight ? 0 : Infinity;
    },
    lines: () => {
      const [mx, my] = canvas.hoverAt;
      const row = Math.min(rows - 1, Math.floor((my / canvas.cssHeight) * rows));
      const col = Math.min(cols - 1, Math.floor((mx / canvas.cssWidth) * cols));
      const value = values[row * cols + col];
      const lines = [data.variable, `${run}, ${data.source} source, epoch ${data.epoch}`,
        `${data.gates[gate]} gate, block (${row}, ${col}) of ${rows}×${cols}`];
      if (blockRows * blockCols > 1) lines.push(`blocks of ${blockRows}×${blockCols} elements`);
      lines.push(typeof value === 'number'
        ? `mean |g|: ${formatNumber(value)}${scale > 0 ? ` (÷ scale ${formatNumber(scale)} = ${formatNumber(value / scale)})` : ''}`
        : 'mean |g|: non-finite');
      return lines;
    },
  }]);
}
