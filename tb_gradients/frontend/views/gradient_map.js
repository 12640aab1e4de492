// The gradient map: every variable over every window in one picture, for
// models with hundreds of variables. Rows are the variables in input →
// output order (each block of a repeated structure labelled by its depth),
// columns the recorded windows, colour the log10 of one statistic (the
// gradient's RMS by default). A block that vanishes is a dark band, one
// that explodes a bright one, a dead one black, NaN and Inf are marked in
// their own colours. Hover names the variable, window and value; a click
// opens that variable's heatmap at that window; dragging across zooms into
// a range of steps, a double-click shows them all again. One request per
// run (/gradient_map: uint8 log codes).

import {fetchGradientMap} from '../api.js';
import {context, createCanvas, drawMessage, formatNumber, installHover} from '../lib/charts.js';
import {viridis} from '../lib/colors.js';
import {atText, axisOf} from '../lib/axis.js';
import {el, option} from '../lib/dom.js';
import {loadPanels, runPanels, viewSection} from '../lib/panels.js';

// The codes of docs/API.md (/gradient_map).
export const CODE_MISSING = 0;
export const CODE_ZERO = 1;
const CODE_FIRST = 2;
const CODE_LAST = 253;
export const CODE_INF = 254;
export const CODE_NAN = 255;

const STATS = ['rms', 'mean_abs', 'max_abs', 'l2', 'std', 'norm', 'dissolving_norm', 'accumulated_max_abs'];
const MARGIN = {left: 74, right: 78, top: 22, bottom: 30};
const MAX_PLOT_HEIGHT = 640;
const MAX_ROW_PIXELS = 6;
const COLORS = {
  [CODE_MISSING]: [250, 250, 250],
  [CODE_ZERO]: [0, 0, 0],
  [CODE_INF]: [255, 23, 68],
  [CODE_NAN]: [255, 0, 255],
};
const LEGEND = [
  {label: 'zero', code: CODE_ZERO},
  {label: 'Inf', code: CODE_INF},
  {label: 'NaN', code: CODE_NAN},
  {label: 'no record', code: CODE_MISSING},
];

export function codeColor(code) {
  if (COLORS[code]) return COLORS[code];
  return viridis((code - CODE_FIRST) / (CODE_LAST - CODE_FIRST));
}

// The value a code stands for (its level's centre), from the body's range.
export function codeValue(data, code) {
  if (code === CODE_MISSING) return undefined;
  if (code === CODE_ZERO) return 0;
  if (code === CODE_INF) return Infinity;
  if (code === CODE_NAN) return NaN;
  const span = data.high - data.low;
  return 10 ** (data.low + (code - CODE_FIRST) / (CODE_LAST - CODE_FIRST) * span);
}

// The codes of a body, rows = variables, columns = steps.
export function decodeCodes(data) {
  const text = atob(data.codes || '');
  const codes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) codes[i] = text.charCodeAt(i);
  return codes;
}

// [first, end) of the items shown by pixel `index` of `pixels` when `count`
// items share them (each pixel shows at least one item).
function spanOf(index, pixels, count) {
  const first = Math.floor(index * count / pixels);
  return [first, Math.max(first + 1, Math.floor((index + 1) * count / pixels))];
}

// The highest code of a block of cells: a NaN, an Inf or a spike among
// the variables or windows a pixel stands for is never hidden.
function blockCode(codes, columns, [r0, r1], [c0, c1]) {
  let best = 0;
  for (let r = r0; r < r1; r++) {
    const row = r * columns;
    for (let c = c0; c < c1; c++) if (codes[row + c] > best) best = codes[row + c];
  }
  return best;
}

export function createGradientMapView(state, {open} = {}) {
  const options = {stat: 'rms'};
  const {section, controls, body} = viewSection('gradient-map', 'Gradient map',
    'Every variable (rows, input → output; blocks of a repeated structure labelled by depth) over every ' +
    'recorded window (columns), colour = log10 of the statistic. A block whose gradient vanishes is a dark ' +
    'band, one that explodes a bright one; zero is black, Inf red, NaN magenta. Hover for the variable, ' +
    'window and value; click to open its heatmap there; drag across to zoom into steps, double-click to see all.');
  const statSelect = el('select', {dataset: {control: 'gradient-map-stat'}, attrs: {'aria-label': 'Statistic of the gradient map'}},
    STATS.map((stat) => option(stat, stat, stat === options.stat)));
  statSelect.addEventListener('change', () => { options.stat = statSelect.value; render(); });
  controls.append(el('label', {className: 'field'}, [el('span', {text: 'Statistic '}), statSelect]));
  let generation = 0;

  function draw(canvas, panel) {
    const data = panel.data;
    const rows = data.variables.length;
    const steps = data.steps;
    const [first, end] = canvas.zoomColumns || [0, steps.length];
    const columns = end - first;
    const ctx = context(canvas);
    const width = canvas.cssWidth;
    const plot = {
      left: MARGIN.left, top: MARGIN.top,
      width: width - MARGIN.left - MARGIN.right,
      height: canvas.cssHeight - MARGIN.top - MARGIN.bottom,
    };
    canvas.plot = plot;
    Object.assign(canvas.dataset, {
      rows: String(rows), columns: String(columns), stat: data.stat,
      plotLeft: String(plot.left), plotTop: String(plot.top),
      plotWidth: String(plot.width), plotHeight: String(plot.height),
      zoomed: canvas.zoomColumns ? 'true' : 'false',
    });
    ctx.fillStyle = '#202124';
    ctx.font = '500 12px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.fillText(`${data.stat}, log10`, plot.left, 14);
    if (!rows || !columns) return;

    // The picture at device resolution, each pixel the highest code of the
    // cells it stands for.
    const ratio = canvas.width / canvas.cssWidth;
    const pw = Math.max(1, Math.round(plot.width * ratio));
    const ph = Math.max(1, Math.round(plot.height * ratio));
    const image = ctx.createImageData(pw, ph);
    const codes = panel.codes;
    const total = steps.length;
    const rowSpans = Array.from({length: ph}, (_, y) => spanOf(y, ph, rows));
    for (let x = 0; x < pw; x++) {
      const [c0, c1] = spanOf(x, pw, columns);
      const span = [first + c0, first + c1];
      for (let y = 0; y < ph; y++) {
        const [r, g, b] = codeColor(blockCode(codes, total, rowSpans[y], span));
        const at = (y * pw + x) * 4;
        image.data[at] = r;
        image.data[at + 1] = g;
        image.data[at + 2] = b;
        image.data[at + 3] = 255;
      }
    }
    ctx.putImageData(image, Math.round(plot.left * ratio), Math.round(plot.top * ratio));

    // Depth labels: the first row of each block, where there is room.
    ctx.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.fillStyle = '#5f6368';
    ctx.textAlign = 'right';
    const rowY = (row) => plot.top + row * plot.height / rows;
    const every = Math.max(1, Math.ceil(rows / 20));
    const labels = [];
    data.variables.forEach((variable, row) => {
      const previous = data.variables[row - 1];
      const newBlock = data.structure && variable.depth !== null
        && (!previous || previous.depth !== variable.depth);
      if (newBlock && row > 0 && plot.height / rows >= 2) {
        ctx.strokeStyle = 'rgba(255, 255, 255, 0.6)';
        ctx.beginPath();
        ctx.moveTo(plot.left, rowY(row));
        ctx.lineTo(plot.left + plot.width, rowY(row));
        ctx.stroke();
      }
      // a block by its depth; outside the blocks (or without them), a layer
      if (newBlock) labels.push({y: rowY(row) + 9, text: `block ${variable.depth}`, block: true});
      else if (variable.depth === null && variable.layer !== previous?.layer
        && (data.structure || row % every === 0)) labels.push({y: rowY(row) + 9, text: variable.layer, block: false});
    });
    // The blocks' labels first, then the layers' where there is room.
    const placed = [];
    for (const blocks of [true, false]) {
      for (const {y, text} of labels.filter((label) => label.block === blocks)) {
        if (placed.some((other) => Math.abs(other - y) < 12)) continue;
        placed.push(y);
        ctx.fillText(text.length > 11 ? `${text.slice(0, 10)}…` : text, plot.left - 4, y);
      }
    }

    // Steps below, at most one label per 70 pixels.
    ctx.textAlign = 'center';
    const stepLabels = Math.max(1, Math.floor(plot.width / 70));
    for (let k = 0; k < stepLabels; k++) {
      const column = Math.min(columns - 1, Math.round(k * (columns - 1) / Math.max(1, stepLabels - 1)));
      const x = plot.left + (column + 0.5) * plot.width / columns;
      ctx.fillText(String(steps[first + column]), x, plot.top + plot.height + 14);
    }
    ctx.fillText(axisOf(panel.info), plot.left + plot.width / 2, plot.top + plot.height + 27);

    // Colour bar: the decades of the run's range, and the marked codes.
    const barLeft = plot.left + plot.width + 10;
    const barHeight = Math.min(plot.height, 160);
    for (let y = 0; y < barHeight; y++) {
      const code = Math.round(CODE_LAST - y / barHeight * (CODE_LAST - CODE_FIRST));
      const [r, g, b] = codeColor(code);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(barLeft, plot.top + y, 12, 1);
    }
    ctx.textAlign = 'left';
    ctx.fillStyle = '#5f6368';
    if (data.high !== null) {
      ctx.fillText(`1e${Math.round(data.high)}`, barLeft + 15, plot.top + 9);
      ctx.fillText(`1e${Math.round(data.low)}`, barLeft + 15, plot.top + barHeight);
    }
    LEGEND.forEach(({label, code}, k) => {
      const y = plot.top + barHeight + 14 + k * 14;
      const [r, g, b] = codeColor(code);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(barLeft, y - 9, 12, 10);
      ctx.strokeStyle = '#bdc1c6';
      ctx.strokeRect(barLeft, y - 9, 12, 10);
      ctx.fillStyle = '#5f6368';
      ctx.fillText(label, barLeft + 15, y);
    });
  }

  // The variable and window under a point of the plot (CSS pixels).
  function cellAt(canvas, panel, px, py) {
    const plot = canvas.plot;
    if (!plot || px < plot.left || py < plot.top || px >= plot.left + plot.width || py >= plot.top + plot.height) return null;
    const [first, end] = canvas.zoomColumns || [0, panel.data.steps.length];
    const row = Math.min(panel.data.variables.length - 1, Math.floor((py - plot.top) / plot.height * panel.data.variables.length));
    const column = first + Math.min(end - first - 1, Math.floor((px - plot.left) / plot.width * (end - first)));
    return {row, column};
  }

  function describe(panel, {row, column}) {
    const data = panel.data;
    const variable = data.variables[row];
    const code = panel.codes[row * data.steps.length + column];
    const value = codeValue(data, code);
    const where = variable.depth !== null && variable.depth !== undefined
      ? `block ${variable.depth}, ${variable.role}` : 'outside the repeated blocks';
    return [
      variable.name,
      `${panel.run}, ${atText(panel.info, data.steps[column])}`,
      `${data.stat}: ${value === undefined ? 'no record' : formatNumber(value)}`,
      data.structure ? where : `shape [${variable.shape.join(', ')}]`,
    ];
  }

  function install(canvas, panel) {
    let pointer = null;
    installHover(canvas, [{
      hit: (px, py) => {
        pointer = cellAt(canvas, panel, px, py);
        return pointer ? 0 : Infinity;
      },
      lines: () => describe(panel, pointer),
    }]);
    let dragFrom = null;
    canvas.addEventListener('mousedown', (event) => {
      const box = canvas.getBoundingClientRect();
      dragFrom = cellAt(canvas, panel, event.clientX - box.left, event.clientY - box.top);
    });
    canvas.addEventListener('mouseup', (event) => {
      const box = canvas.getBoundingClientRect();
      const to = cellAt(canvas, panel, event.clientX - box.left, event.clientY - box.top);
      const from = dragFrom;
      dragFrom = null;
      if (!from || !to) return;
      if (Math.abs(to.column - from.column) >= 1) {
        canvas.zoomColumns = [Math.min(from.column, to.column), Math.max(from.column, to.column) + 1];
        draw(canvas, panel);
      } else if (to.row === from.row && open) {
        const variable = panel.data.variables[to.row];
        open({variable: variable.name, at: panel.data.steps[to.column], source: panel.data.source, view: 'heatmap'}, panel.info);
      }
    });
    canvas.addEventListener('dblclick', () => {
      canvas.zoomColumns = null;
      draw(canvas, panel);
    });
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => fetchGradientMap(panel.run, state.source, options.stat));
    if (mine !== generation) return;
    for (const panel of loaded) {
      const rows = panel.data.variables.length;
      const rowPixels = Math.max(1, Math.min(MAX_ROW_PIXELS, Math.floor(MAX_PLOT_HEIGHT / Math.max(1, rows))));
      const plotHeight = Math.max(120, Math.min(MAX_PLOT_HEIGHT, rows * rowPixels));
      const canvas = createCanvas('gradient-map', panel.width, plotHeight + MARGIN.top + MARGIN.bottom,
        `Gradient map of ${panel.run}: ${rows} variables over ${panel.data.steps.length} windows`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      if (!panel.data.steps.length) {
        drawMessage(canvas, 'No windows yet');
        continue;
      }
      panel.codes = decodeCodes(panel.data);
      draw(canvas, panel);
      install(canvas, panel);
    }
  }

  return {id: 'gradient-map', section, render};
}
