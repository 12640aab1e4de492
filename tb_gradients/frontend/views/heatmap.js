// View 6: the seed's heatmap animation. Per variable three panels: Gradient
// (gradient_mean_abs, or gradient_max_abs), Dissolving gradient
// (dissolving_mean) and Accumulated gradient (accumulated_mean_abs), each
// coloured by value / scale where scale is the channel's maximum over all
// epochs, so colours are comparable along the epoch slider.

import {fetchHeatmap, fetchVariables} from '../api.js';
import {BACKGROUND, createCanvas, formatNumber, sizeCanvas} from '../lib/charts.js';
import {INF_COLOR, MISSING_COLOR, NAN_COLOR, rgbCss, viridis} from '../lib/colors.js';
import {checkbox, el, errorBox, hideTooltip, notice, option, showTooltip} from '../lib/dom.js';
import {atText, axisOf, byAxis} from '../lib/axis.js';
import {availableRecord, axisPlayers} from '../lib/window_player.js';
import {runPanels, viewSection} from '../lib/panels.js';

const PANELS = [
  {key: 'gradient', title: 'Gradient'},
  {key: 'dissolving', title: 'Dissolving gradient', channel: 'dissolving_mean'},
  {key: 'accumulated', title: 'Accumulated gradient', channel: 'accumulated_mean_abs'},
];
const MAX_PANEL_HEIGHT = 240;
const MAX_CELL = 36;
const MIN_EXTENT = 10;       // thinnest drawn side, so 1×n vectors stay visible
const LOG_DECADES = 6;       // the log colour scale spans scale·1e-6 … scale

// Pixel size of a rows × cols heatmap drawn into at most width × height.
function drawSize(rows, cols, width, height) {
  const cell = Math.min(width / cols, height / rows, MAX_CELL);
  return {
    width: Math.max(MIN_EXTENT, Math.min(width, Math.round(cols * cell))),
    height: Math.max(MIN_EXTENT, Math.round(rows * cell)),
  };
}

export function createHeatmapView(state) {
  const options = {mode: 'first', count: 6, variable: null, gradientMax: false, logColor: false};
  const {section, controls, body} = viewSection('heatmap', 'Gradient heatmaps',
    'Pooled |gradient| of each variable (blocks of elements averaged, or their maximum), ' +
    'the dissolving gradient (Σ|G| − |ΣG|, the part that cancelled out) and the ' +
    '|accumulated gradient|, each divided by its maximum over all epochs. ' +
    'Move the slider or press play to watch them evolve (runs recorded per window of ' +
    'optimizer steps have a step slider of their own).');

  // ---- controls
  const modeSelect = el('select', {attrs: {id: 'heatmap-mode', 'aria-label': 'Which variables'},
    dataset: {control: 'heatmap-mode'}}, [
    option('first', 'First N variables matching the filter', true),
    option('one', 'One variable'),
  ]);
  const countInput = el('input', {attrs: {type: 'number', min: 1, max: 200, value: options.count,
    id: 'heatmap-count', 'aria-label': 'Number of variables'}, dataset: {control: 'heatmap-count'}});
  const variableSelect = el('select', {attrs: {id: 'heatmap-variable', 'aria-label': 'Variable'},
    dataset: {control: 'heatmap-variable'}});
  // Epoch runs and window runs each have their own slider: epochs and
  // steps are not one axis.
  const players = axisPlayers((axis) => ({
    slider: `${axis}-slider`, label: `${axis}-label`, aria: `Heatmap ${axis}`,
    play: axis === 'epoch' ? 'play-button' : `${axis}-play-button`,
  }), (axis) => drawAxis(axis), (axis, epoch) => state.remember?.({at: epoch}));
  const colorBar = createCanvas('heatmap-colorbar', 280, 44, 'Colour scale of the heatmaps');
  controls.append(
    el('div', {className: 'control-row'}, [
      modeSelect, countInput, variableSelect,
      checkbox('Gradient: show gradient_max_abs', options.gradientMax,
        (value) => { options.gradientMax = value; updateHeaders(); drawAll(); }, {control: 'heatmap-max'}),
      checkbox('Log colour scale', options.logColor,
        (value) => { options.logColor = value; drawColorBar(); drawAll(); }, {control: 'heatmap-log'}),
    ]),
    ...players.rows,
    el('div', {className: 'control-row colorbar-row'}, [
      colorBar,
      el('span', {className: 'legend-item'}, [swatch(NAN_COLOR, '×'), el('span', {text: 'NaN'})]),
      el('span', {className: 'legend-item'}, [swatch(INF_COLOR, '+'), el('span', {text: 'Inf'})]),
      el('span', {className: 'legend-item'}, [swatch(MISSING_COLOR), el('span', {text: 'no value'})]),
    ]));

  function swatch(rgb, mark = '') {
    const node = el('span', {className: 'swatch swatch-marked', text: mark});
    node.style.background = rgbCss(rgb);
    return node;
  }

  function syncModeControls() {
    countInput.disabled = options.mode !== 'first';
    variableSelect.disabled = options.mode !== 'one';
  }
  syncModeControls();
  modeSelect.addEventListener('change', () => {
    options.mode = modeSelect.value;
    syncModeControls();
    if (options.mode !== 'one') state.remember?.({variable: null});
    render();
  });
  countInput.addEventListener('change', () => {
    const value = Math.round(Number(countInput.value));
    options.count = Number.isFinite(value) && value > 0 ? value : 1;
    countInput.value = String(options.count);
    render();
  });
  variableSelect.addEventListener('change', () => {
    options.variable = variableSelect.value;
    state.remember?.({variable: options.variable});
    render();
  });

  // ---- state of the current rendering
  let cells = [];            // one per (run panel, variable): {panel, variable, canvases, epochs, data}
  let generation = 0;
  let headers = [];

  const gradientChannel = () => (options.gradientMax ? 'gradient_max_abs' : 'gradient_mean_abs');
  const channelOf = (panel) => panel.channel || gradientChannel();

  function updateHeaders() {
    for (const header of headers) header.sub.textContent = channelOf(header.panel);
  }

  // ---- drawing

  function drawColorBar() {
    const ctx = colorBar.getContext('2d');
    const ratio = colorBar.width / colorBar.cssWidth;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, colorBar.cssWidth, colorBar.cssHeight);
    const left = 8;
    const width = colorBar.cssWidth - 16;
    for (let x = 0; x < width; x++) {
      ctx.fillStyle = rgbCss(viridis(x / (width - 1)));
      ctx.fillRect(left + x, 4, 1.5, 14);
    }
    ctx.fillStyle = '#5f6368';
    ctx.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.textBaseline = 'top';
    const ticks = options.logColor
      ? Array.from({length: LOG_DECADES + 1}, (_, i) => [i / LOG_DECADES, i === LOG_DECADES ? '1' : `1e-${LOG_DECADES - i}`])
      : [[0, '0'], [0.5, '0.5'], [1, '1']];
    for (const [t, text] of ticks) {
      const x = left + t * (width - 1);
      ctx.fillRect(x, 18, 1, 3);
      ctx.textAlign = t === 0 ? 'left' : t === 1 ? 'right' : 'center';
      ctx.fillText(text, x, 22);
    }
    ctx.textAlign = 'center';
    ctx.fillText('value / scale (channel max over all epochs)', left + width / 2, 32);
  }
  drawColorBar();

  function colorFraction(value, scale) {
    if (!(scale > 0)) return 0;
    const ratio = Math.abs(value) / scale;
    if (!options.logColor) return ratio;
    return ratio > 0 ? 1 + Math.log10(ratio) / LOG_DECADES : 0;
  }

  function drawHeatmap(canvas, data, channelName) {
    const channel = data.channels[channelName];
    const {rows, cols} = data;
    const ctx = canvas.getContext('2d');
    const ratio = canvas.width / canvas.cssWidth;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, canvas.cssWidth, canvas.cssHeight);
    canvas.hover = null;
    if (!channel) {
      ctx.fillStyle = '#5f6368';
      ctx.fillText(`no ${channelName}`, 4, 14);
      return;
    }
    const nan = new Set(channel.nan || []);
    const inf = new Set(channel.inf || []);
    const scale = channel.scale ?? channel.max;
    // One pixel per cell, scaled up without smoothing so blocks stay sharp.
    const image = new ImageData(cols, rows);
    for (let i = 0; i < rows * cols; i++) {
      const value = channel.values[i];
      const rgb = nan.has(i) ? NAN_COLOR
        : inf.has(i) ? INF_COLOR
          : typeof value === 'number' ? viridis(colorFraction(value, scale)) : MISSING_COLOR;
      image.data[4 * i] = rgb[0];
      image.data[4 * i + 1] = rgb[1];
      image.data[4 * i + 2] = rgb[2];
      image.data[4 * i + 3] = 255;
    }
    const cellsCanvas = document.createElement('canvas');
    cellsCanvas.width = cols;
    cellsCanvas.height = rows;
    cellsCanvas.getContext('2d').putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cellsCanvas, 0, 0, canvas.cssWidth, canvas.cssHeight);
    markNonFinite(ctx, nan, inf, rows, cols, canvas.cssWidth / cols, canvas.cssHeight / rows);
    canvas.hover = {data, channel, channelName, scale, nan, inf};
  }

  // Besides their colour, NaN cells get a × and Inf cells a +, so they stay
  // distinguishable without colour vision (when cells are big enough).
  function markNonFinite(ctx, nan, inf, rows, cols, cellWidth, cellHeight) {
    if (Math.min(cellWidth, cellHeight) < 6 || (!nan.size && !inf.size)) return;
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = 1.25;
    ctx.beginPath();
    const inset = Math.min(cellWidth, cellHeight) * 0.25;
    for (const [cells, cross] of [[nan, true], [inf, false]]) {
      for (const index of cells) {
        const x = (index % cols) * cellWidth;
        const y = Math.floor(index / cols) * cellHeight;
        if (cross) {
          ctx.moveTo(x + inset, y + inset);
          ctx.lineTo(x + cellWidth - inset, y + cellHeight - inset);
          ctx.moveTo(x + cellWidth - inset, y + inset);
          ctx.lineTo(x + inset, y + cellHeight - inset);
        } else {
          ctx.moveTo(x + cellWidth / 2, y + inset);
          ctx.lineTo(x + cellWidth / 2, y + cellHeight - inset);
          ctx.moveTo(x + inset, y + cellHeight / 2);
          ctx.lineTo(x + cellWidth - inset, y + cellHeight / 2);
        }
      }
    }
    ctx.stroke();
  }

  function describeCell(canvas, px, py) {
    const {data, channel, channelName, scale, nan, inf} = canvas.hover;
    const row = Math.min(data.rows - 1, Math.floor((py / canvas.cssHeight) * data.rows));
    const col = Math.min(data.cols - 1, Math.floor((px / canvas.cssWidth) * data.cols));
    const index = row * data.cols + col;
    const value = channel.values[index];
    const [blockRows, blockCols] = data.block || [1, 1];
    const lines = [
      data.variable,
      `${canvas.dataset.run}, ${canvas.dataset.axis} ${data.epoch}, ${channelName}`,
      `block (${row}, ${col}) of ${data.rows}×${data.cols}`,
    ];
    if (blockRows * blockCols > 1) {
      const [viewRows, viewCols] = data.view_shape || [data.rows * blockRows, data.cols * blockCols];
      const lastRow = Math.min(viewRows, (row + 1) * blockRows) - 1;
      const lastCol = Math.min(viewCols, (col + 1) * blockCols) - 1;
      lines.push(`elements rows ${row * blockRows}–${lastRow}, cols ${col * blockCols}–${lastCol} of ${viewRows}×${viewCols}`);
    }
    if (nan.has(index)) lines.push('value: NaN');
    else if (inf.has(index)) lines.push('value: Inf');
    else if (typeof value !== 'number') lines.push('value: none');
    else {
      lines.push(`value: ${formatNumber(value)}`);
      if (scale > 0) lines.push(`value / scale: ${formatNumber(Math.abs(value) / scale)} (scale ${formatNumber(scale)})`);
    }
    return lines;
  }

  function attachHover(canvas) {
    canvas.addEventListener('mousemove', (event) => {
      if (!canvas.hover) return hideTooltip();
      const box = canvas.getBoundingClientRect();
      showTooltip(describeCell(canvas, event.clientX - box.left, event.clientY - box.top), event.clientX, event.clientY);
    });
    canvas.addEventListener('mouseleave', hideTooltip);
  }

  async function drawCell(cell, target) {
    if (!cell.epochs || !cell.epochs.length) return;
    const epoch = availableRecord(cell.epochs, target);
    let data = cell.byEpoch.get(epoch);
    if (!data) {
      data = await fetchHeatmap(cell.panel.run, state.source, cell.variable.name, epoch);
      cell.byEpoch.set(epoch, data);
    }
    const shown = atText(cell.panel.info, epoch);
    cell.shownEpoch.textContent = epoch === target ? shown : `${shown} (latest ≤ ${target})`;
    for (const spec of PANELS) drawHeatmap(cell.canvases[spec.key], data, channelOf(spec));
  }

  // Draws the cells of the runs whose x axis is `axis` at its slider's value.
  async function drawAxis(axis) {
    const player = players.player(axis);
    const target = player.current();
    if (target === null) return;
    player.show(target);
    await Promise.all(cells.filter((cell) => cell.axis === axis).map((cell) => drawCell(cell, target).catch((error) => {
      cell.error.replaceChildren(errorBox(error.message || String(error)));
    })));
  }

  const drawAll = () => Promise.all([...byAxis(cells, (cell) => cell.panel.info).keys()].map(drawAxis));

  // ---- building the panels

  function chooseVariables(variables) {
    const matching = variables.filter((variable) => variable.heatmap && state.matches(variable.name));
    if (options.mode === 'one') return matching.filter((variable) => variable.name === options.variable);
    return matching.slice(0, options.count);
  }

  function buildCell(panel, variable, canvasWidth) {
    // Resized once the first response tells the grid's rows × cols.
    const size = drawSize(1, 1, canvasWidth, MAX_PANEL_HEIGHT);
    const canvases = {};
    const shownEpoch = el('span', {className: 'muted'});
    const error = el('div');
    const row = el('div', {className: 'heatmap-row'}, PANELS.map((spec) => {
      const canvas = createCanvas('heatmap', size.width, size.height, `${spec.title} of ${variable.name}`);
      canvas.dataset.run = panel.run;
      canvas.dataset.axis = axisOf(panel.info);
      canvas.dataset.variable = variable.name;
      canvas.dataset.panel = spec.key;
      attachHover(canvas);
      canvases[spec.key] = canvas;
      const holder = el('div', {className: 'heatmap-cell'}, [canvas]);
      holder.style.width = `${canvasWidth}px`;
      return holder;
    }));
    panel.element.append(el('div', {className: 'heatmap-variable'}, [
      el('div', {className: 'heatmap-title'}, [
        el('span', {className: 'variable-name', text: variable.name}),
        el('span', {className: 'muted', text: ` [${variable.shape.join('×')}]`}),
        el('span', {text: ' '}),
        shownEpoch,
      ]),
      row, error,
    ]));
    return {panel, variable, axis: axisOf(panel.info), canvases, shownEpoch, error, epochs: null, byEpoch: new Map()};
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const usable = panels.filter((panel) => panel.element);
    const lists = await Promise.all(usable.map((panel) => fetchVariables(panel.run, state.source)
      .then((data) => data.variables, (error) => {
        panel.element.replaceChildren(errorBox(error.message || String(error)));
        return null;
      })));
    if (mine !== generation) return;

    // The variable picker offers every heatmap variable of the selected runs.
    const names = [];
    lists.forEach((list) => (list || []).forEach((variable) => {
      if (variable.heatmap && state.matches(variable.name) && !names.includes(variable.name)) names.push(variable.name);
    }));
    // The tab's variable (its URL, a finding's link) shows that one alone.
    if (state.variable && names.includes(state.variable)) {
      options.mode = 'one';
      options.variable = state.variable;
      modeSelect.value = 'one';
      syncModeControls();
    }
    if (!names.includes(options.variable)) options.variable = names[0] ?? null;
    if (options.mode === 'one' && options.variable && options.variable !== state.variable) {
      state.remember?.({variable: options.variable});
    }
    variableSelect.replaceChildren(...names.map((name) => option(name, name, name === options.variable)));

    cells = [];
    headers = [];
    usable.forEach((panel, p) => {
      const list = lists[p];
      if (!list) return;
      const chosen = chooseVariables(list);
      if (!chosen.length) {
        panel.element.append(notice(list.some((variable) => variable.heatmap)
          ? 'No variable with a heatmap matches the filter.'
          : 'No heatmaps in this run for this source.'));
        return;
      }
      const canvasWidth = Math.floor((panel.width - 16) / 3);
      panel.element.append(el('div', {className: 'heatmap-row heatmap-headers'}, PANELS.map((spec) => {
        const sub = el('div', {className: 'muted', text: channelOf(spec)});
        headers.push({panel: spec, sub});
        const header = el('div', {className: 'heatmap-cell'}, [el('div', {className: 'heatmap-header', text: spec.title}), sub]);
        header.style.width = `${canvasWidth}px`;
        return header;
      })));
      for (const variable of chosen) cells.push(buildCell(panel, variable, canvasWidth));
    });

    // The first request (no epoch: the latest) tells each variable's grid
    // size and which epochs have heatmaps.
    await Promise.all(cells.map(async (cell) => {
      try {
        const data = await fetchHeatmap(cell.panel.run, state.source, cell.variable.name);
        cell.epochs = [...(data.epochs || [data.epoch])].sort((a, b) => a - b);
        cell.byEpoch.set(data.epoch, data);
        const size = drawSize(data.rows, data.cols, Math.floor((cell.panel.width - 16) / 3), MAX_PANEL_HEIGHT);
        for (const canvas of Object.values(cell.canvases)) sizeCanvas(canvas, size.width, size.height);
      } catch (error) {
        cell.error.replaceChildren(errorBox(error.message || String(error)));
      }
    }));
    if (mine !== generation) return;
    const recorded = new Map();
    for (const [axis, members] of byAxis(cells, (cell) => cell.panel.info)) {
      const all = new Set();
      for (const cell of members) (cell.epochs || []).forEach((epoch) => all.add(epoch));
      recorded.set(axis, [...all].sort((a, b) => a - b));
    }
    players.setEpochs(recorded);
    players.select(state.at ?? null);
    await drawAll();
  }

  return {id: 'heatmap', section, render};
}
