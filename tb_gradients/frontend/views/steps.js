// View 5: one point per optimizer step, epochs concatenated: the global L2
// norm of the applied gradient and log10 of its largest |element| (the
// "why are gradients < 1" scatter). Dashed lines mark epoch boundaries. A
// run recorded per window of optimizer steps is drawn against the global
// optimizer step itself (a window recorded at step S with n rows covers
// steps S - n + 1 … S), dashed lines between windows.

import {fetchSteps} from '../api.js';
import {createCanvas, drawLineChart, extent, formatNumber} from '../lib/charts.js';
import {STAT_COLORS} from '../lib/colors.js';
import {axisOf} from '../lib/axis.js';
import {checkbox, el, notice} from '../lib/dom.js';
import {loadPanels, runPanels, viewSection, yDomainsOf} from '../lib/panels.js';

const HEIGHT = 240;
// Per-step values are recorded in the compiled train step, so only the
// training source has them (whatever the source picker says).
const SOURCE = 'training';

// Flattens {epochs: [{epoch, l2: [...], max_abs: [...]}]} into points keyed
// by the global step (epoch runs: the index of the step in the
// concatenation; window runs: the optimizer step), plus the x where a new
// epoch or window starts. `where` maps x to what it is.
function concatenate(data, windows) {
  const l2 = [];
  const log10Max = [];
  const boundaries = [];
  const where = new Map();
  let step = 0;
  for (const {epoch, l2: norms = [], max_abs: maxima = []} of data.epochs) {
    const count = Math.max(norms.length, maxima.length);
    if (windows) step = epoch - count + 1;
    if (l2.length) boundaries.push(step - 0.5);
    for (let i = 0; i < count; i++, step++) {
      const norm = norms[i] ?? null;
      const max = maxima[i] ?? null;
      l2.push([step, norm]);
      log10Max.push([step, typeof max === 'number' && max > 0 ? Math.log10(max) : null]);
      where.set(step, {epoch, index: i, max});
    }
  }
  return {l2, log10Max, boundaries, where};
}

export function createStepsView(state) {
  const options = {log: true};
  const {section, controls, body} = viewSection('steps', 'Per-step gradients (training source)',
    'Every optimizer step, epochs concatenated: global L2 norm of the gradient ' +
    'the optimizer applied (l2) and log10 of its largest |element| (max_abs). ' +
    'Drag across a chart to zoom into a range, double-click to see it all.');
  controls.append(checkbox('Log y axis (l2)', options.log,
    (value) => { options.log = value; render(); }, {control: 'steps-log'}));
  let generation = 0;

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state, {needsSource: false});
    for (const panel of panels) {
      if (!panel.info.sources.includes(SOURCE)) {
        panel.element.append(notice('Per-step values exist only for the training source; this run has none.'));
        panel.element = null;
      }
    }
    const loaded = await loadPanels(panels, (panel) => fetchSteps(panel.run, SOURCE));
    if (mine !== generation) return;
    for (const panel of loaded) panel.flat = concatenate(panel.data, axisOf(panel.info) === 'step');
    const l2Domain = yDomainsOf(state, loaded,
      (panel) => extent(panel.flat.l2.map((p) => p[1]), options.log), options.log, !options.log);
    const maxDomain = yDomainsOf(state, loaded,
      (panel) => extent(panel.flat.log10Max.map((p) => p[1])), false, false);

    for (const panel of loaded) {
      const {l2, log10Max, boundaries, where} = panel.flat;
      const windows = axisOf(panel.info) === 'step';
      const record = windows ? 'windows' : 'epochs';
      if (!l2.length) {
        panel.element.append(notice('No optimizer steps recorded yet.'));
        continue;
      }
      // At most ~40 boundary lines: beyond that they would hide the points.
      const stride = Math.ceil(boundaries.length / 40);
      const vlines = boundaries.filter((_, i) => (i + 1) % stride === 0)
        .map((x) => ({x, color: '#c8c8c8', dash: [3, 3]}));
      const xDomain = [l2[0][0] - 0.5, Math.max(l2[0][0] + 1, l2[l2.length - 1][0]) + 0.5];
      const describe = (stat, text) => (x, y) => {
        const at = where.get(x);
        return [panel.run, windows ? `step ${x} (window recorded at step ${at.epoch})`
          : `epoch ${at.epoch}, step ${at.index} (global ${x})`, text(y, at)];
      };
      const charts = [
        {
          title: 'l2 (global L2 norm per step)', stat: 'l2', points: l2, yDomain: l2Domain(panel), yLog: options.log,
          color: STAT_COLORS.l2, text: (y) => `l2: ${formatNumber(y)}`,
        },
        {
          title: 'log10 max_abs per step', stat: 'max_abs', points: log10Max, yDomain: maxDomain(panel), yLog: false,
          color: STAT_COLORS.max_abs, text: (y, at) => `log10 max_abs: ${formatNumber(y)} (max_abs ${formatNumber(at.max)})`,
        },
      ];
      for (const chart of charts) {
        const canvas = createCanvas('steps', panel.width, HEIGHT, `${chart.title} of ${panel.run}`);
        canvas.dataset.run = panel.run;
        canvas.dataset.stat = chart.stat;
        panel.element.append(el('div', {className: 'chart'}, [canvas]));
        drawLineChart(canvas, {
          title: stride > 1 ? `${chart.title}, dashed: every ${stride} ${record}` : chart.title,
          xLabel: windows ? 'step' : 'optimizer step (epochs concatenated)', xInteger: true,
          xDomain, yDomain: chart.yDomain, yLog: chart.yLog, vlines,
          series: [{
            label: chart.stat, color: chart.color, scatter: true,
            radius: l2.length > 2000 ? 1.2 : 2, points: chart.points,
            describe: describe(chart.stat, chart.text),
          }],
        });
      }
    }
  }

  return {id: 'steps', section, render};
}
