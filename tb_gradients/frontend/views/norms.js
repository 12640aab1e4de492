// View 1: the seed's "Gradient Norm" figure. norm, norm_accumulated and
// accumulated_norm per epoch; the dissolving gap between norm_accumulated and
// accumulated_norm drawn as dashed vertical segments.

import {fetchScalars} from '../api.js';
import {createCanvas, drawLineChart, extent, formatNumber, mergeExtents, niceDomain} from '../lib/charts.js';
import {STAT_COLORS, paletteColor} from '../lib/colors.js';
import {atText, axisOf, byAxis} from '../lib/axis.js';
import {checkbox, el} from '../lib/dom.js';
import {epochDomain, loadPanels, panelWidth, runPanels, viewSection, yDomainsOf} from '../lib/panels.js';

const LINES = [
  {stat: 'norm', label: 'norm', dash: []},
  {stat: 'norm_accumulated', label: 'norm_accumulated', dash: [7, 3]},
  {stat: 'accumulated_norm', label: 'accumulated_norm', dash: [2, 2]},
];
const HEIGHT = 320;

export function createNormsView(state) {
  const options = {log: false, overlay: false};
  const {section, controls, body} = viewSection('norms', 'Gradient norm',
    'Standardized L1 norm (Σ over variables of ‖g‖₁ / size) of each epoch\'s ' +
    'summed gradient (norm), of the accumulated gradient (norm_accumulated) and ' +
    'the running sum of norms (accumulated_norm). Dashed segments: ' +
    'dissolving_norm = accumulated_norm − norm_accumulated, the part of the ' +
    'gradients that cancelled out. Runs recorded per window of optimizer steps are drawn ' +
    'against the step. Drag across a chart to zoom into a range, double-click to see it all.');
  controls.append(
    checkbox('Log y axis', options.log, (value) => { options.log = value; render(); },
      {control: 'norms-log'}),
    checkbox('Overlay runs', options.overlay, (value) => { options.overlay = value; render(); },
      {control: 'norms-overlay'}));

  function seriesFor(data, info, color, withStyles) {
    const epochs = data.epochs;
    const series = LINES.map((line) => ({
      label: line.label,
      color: withStyles ? color : STAT_COLORS[line.stat],
      dash: withStyles ? line.dash : [],
      marker: epochs.length <= 40 ? 'tick' : null,
      points: epochs.map((epoch, i) => [epoch, (data.series[line.stat] || [])[i]]),
      describe: (x, y) => [data.run, atText(info, x), `${line.stat}: ${formatNumber(y)}`],
    }));
    const upper = data.series.accumulated_norm || [];
    const lower = data.series.norm_accumulated || [];
    const dissolving = data.series.dissolving_norm || [];
    const segments = epochs.map((epoch, i) => ({
      x: epoch,
      y0: lower[i],
      y1: upper[i],
      color: withStyles ? color : STAT_COLORS.dissolving,
      describe: () => [data.run, atText(info, epoch), `dissolving_norm: ${formatNumber(dissolving[i])}`],
    }));
    return {series, segments};
  }

  const extentOf = (data) => extent(LINES.flatMap((line) => data.series[line.stat] || []), options.log);

  // Renders overlap when the user clicks fast; only the latest may draw.
  let generation = 0;

  async function render() {
    const mine = ++generation;
    if (options.overlay) return renderOverlay(mine);
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => fetchScalars(panel.run, state.source));
    if (mine !== generation) return;
    const yDomainOf = yDomainsOf(state, loaded, (panel) => extentOf(panel.data), options.log, !options.log);
    for (const panel of loaded) {
      const canvas = createCanvas('norms', panel.width, HEIGHT, `Gradient norms of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      const {series, segments} = seriesFor(panel.data, panel.info, null, false);
      drawLineChart(canvas, {
        xLabel: axisOf(panel.info), yLabel: 'L1 norm (standardized)', xInteger: true,
        xDomain: epochDomain(panel.data.epochs), yDomain: yDomainOf(panel),
        yLog: options.log, series, segments,
        legend: [
          ...LINES.map((line) => ({label: line.label, color: STAT_COLORS[line.stat]})),
          {label: 'dissolving_norm', color: STAT_COLORS.dissolving, dash: [4, 3], kind: 'vline'},
        ],
      });
    }
  }

  // All runs in one chart: colour = run, dash pattern = statistic. Epoch
  // runs and window runs get a chart each (epochs and steps are not one
  // axis).
  async function renderOverlay(mine) {
    body.replaceChildren();
    const runs = state.selectedRuns().filter((info) => info.sources.includes(state.source));
    // One (normally empty) element per run to hold that run's error.
    const panels = runs.map((info) => ({run: info.run, info, element: body.appendChild(el('div'))}));
    const loaded = await loadPanels(panels, (panel) => fetchScalars(panel.run, state.source));
    if (mine !== generation) return;
    const yDomain = niceDomain(mergeExtents(loaded.map((panel) => extentOf(panel.data))), options.log, !options.log);
    for (const [axis, members] of byAxis(loaded, (panel) => panel.info)) {
      const xDomain = epochDomain(members.flatMap((panel) => panel.data.epochs));
      const canvas = createCanvas('norms', panelWidth(body, 1), HEIGHT + 40, `Gradient norms of the selected runs, per ${axis}`);
      canvas.dataset.axis = axis;
      body.append(canvas);
      const series = [];
      const segments = [];
      members.forEach((panel) => {
        const color = paletteColor(loaded.indexOf(panel));
        const parts = seriesFor(panel.data, panel.info, color, true);
        parts.series.forEach((s) => { s.label = `${panel.run} ${s.label}`; });
        series.push(...parts.series);
        segments.push(...parts.segments);
      });
      drawLineChart(canvas, {
        xLabel: axis, yLabel: 'L1 norm (standardized)', xInteger: true,
        xDomain, yDomain, yLog: options.log, series, segments,
        legend: [
          ...members.map((panel) => ({label: panel.run, color: paletteColor(loaded.indexOf(panel)), kind: 'box'})),
          ...LINES.map((line) => ({label: line.label, color: '#5f6368', dash: line.dash})),
          {label: 'dissolving_norm', color: '#5f6368', dash: [4, 3], kind: 'vline'},
        ],
      });
    }
  }

  return {id: 'norms', section, render};
}
