// View 3: per-variable statistics over epochs (the vanishing-gradient seed's
// mean / S.D. plots, plus max_abs and l2), one small chart per statistic.

import {fetchOverviewStats, fetchZoomedStats} from '../api.js';
import {createCanvas, drawLineChart, drawMessage, extent, formatNumber, mergeExtents} from '../lib/charts.js';
import {columnOf, variableLine, xText} from '../lib/data.js';
import {axisOf} from '../lib/axis.js';
import {checkbox, el} from '../lib/dom.js';
import {epochDomain, loadPanels, runPanels, variableColors, variableLegend, viewSection, yDomainsOf} from '../lib/panels.js';
import {assignRoleGroups, extremesText, medianBand, pickFilter, roleLegend, withDescription} from '../lib/roles.js';

// `mean` is signed, so it always keeps a linear axis.
const STATS = [
  {stat: 'mean', title: 'mean', signed: true},
  {stat: 'std', title: 'std'},
  {stat: 'max_abs', title: 'max_abs'},
  {stat: 'l2', title: 'l2'},
];
const HEIGHT = 220;

export function createLayerStatsView(state) {
  const options = {log: false};
  const {section, controls, body} = viewSection('layer-stats', 'Layer statistics',
    'Per variable and epoch: mean and standard deviation of the gradient elements, ' +
    'largest |element| (max_abs) and L2 norm (l2). A layer whose curves sit decades ' +
    'below the others is not learning (vanishing gradient). Drag across a chart to zoom into a range, double-click to see it all.');
  controls.append(checkbox('Log y axis (std, max_abs, l2)', options.log,
    (value) => { options.log = value; render(); }, {control: 'layer-stats-log'}));
  let generation = 0;

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => withDescription(panel, state,
      fetchOverviewStats(panel.run, state.source, panel.width)));
    if (mine !== generation) return;
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
    }
    const {byRole, roleColor} = assignRoleGroups(state, loaded);
    const {variables: shown, colorOf} = variableColors(loaded.filter((panel) => !panel.groups));
    // One y scale per statistic (across runs unless the user unticks it).
    const yDomains = {};
    for (const {stat, signed} of STATS) {
      const log = options.log && !signed;
      yDomains[stat] = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.map(
        (variable) => extent(variableLine(panel.data, variable, columnOf(panel.data, stat)).y, log))), log, !log && !signed);
    }

    const pick = pickFilter(state);
    body.prepend(variableLegend(shown, colorOf, [], pick));
    if (byRole.length) body.prepend(roleLegend(byRole, roleColor, pick));
    for (const panel of loaded) {
      const grid = el('div', {className: 'chart-grid'});
      panel.element.append(grid);
      const chartWidth = Math.floor((panel.width - 8) / 2);
      for (const {stat, title, signed} of STATS) {
        const canvas = createCanvas('layer-stats', chartWidth, HEIGHT, `${stat} per variable of ${panel.run}`);
        canvas.dataset.run = panel.run;
        canvas.dataset.stat = stat;
        grid.append(canvas);
        if (!panel.variables.length) {
          drawMessage(canvas, 'No variable matches the filter');
          continue;
        }
        const epochs = panel.data.epochs;
        const names = new Set(panel.variables.map((variable) => variable.name));
        // The variables' lines of one body (the overview or a zoomed range).
        const linesOf = (data) => {
          if (panel.groups) return roleLinesOf(data, panel, stat, roleColor);
          const lines = data.variables.filter((variable) => names.has(variable.name)).map((variable) => {
            const {x, y} = variableLine(data, variable, columnOf(data, stat));
            return {
              label: variable.name,
              color: colorOf(variable),
              marker: epochs.length <= 30 ? 'dot' : null,
              x, y,
              describe: (vx, vy) => [variable.name, `${panel.run}, ${xText(data, axisOf(panel.info), vx)}`, `${stat}: ${formatNumber(vy)}`],
            };
          });
          return {series: lines, resolution: data.buckets ? 'envelope' : 'full'};
        };
        drawLineChart(canvas, {
          title, xLabel: axisOf(panel.info), xInteger: true, xDomain: epochDomain(epochs),
          yDomain: yDomains[stat](panel), yLog: options.log && !signed, ...linesOf(panel.data),
          zoomData: panel.data.buckets
            ? (range) => fetchZoomedStats(panel.run, state.source, range, panel.width).then(linesOf)
            : null,
        });
      }
    }
  }

  return {id: 'layer-stats', section, render};
}

// One line per role of a deep model's blocks (the median over depth) with
// its min–max band; each variable outside the blocks its own line.
export function roleLinesOf(data, panel, stat, roleColor) {
  const byName = new Map(data.variables.map((variable) => [variable.name, variable]));
  const series = [];
  const bands = [];
  const axis = axisOf(panel.info);
  for (const group of panel.groups) {
    const color = roleColor.get(group.label);
    const lines = group.members.filter((member) => byName.has(member.name)).map((member) => ({
      name: member.name, ...variableLine(data, byName.get(member.name), columnOf(data, stat))}));
    if (!lines.length) continue;
    if (!group.role) {
      const [line] = lines;
      series.push({label: group.label, color, x: line.x, y: line.y,
        describe: (vx, vy) => [group.label, `${panel.run}, ${xText(data, axis, vx)}`, `${stat}: ${formatNumber(vy)}`]});
      continue;
    }
    const band = medianBand(lines);
    bands.push({color, points: band.x.map((vx, i) => [vx, band.low[i], band.high[i]])});
    series.push({
      label: group.label, color, x: band.x, y: band.median, role: true,
      describe: (vx, vy) => {
        const i = band.x.indexOf(vx);
        return [`${group.label}: median of ${lines.length} blocks`, `${panel.run}, ${xText(data, axis, vx)}`,
          `${stat}: ${formatNumber(vy)}`, ...extremesText(band, i)];
      },
    });
  }
  return {series, bands, resolution: data.buckets ? 'envelope' : 'full'};
}
