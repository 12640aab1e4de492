// View 2: the seed's "Highest Gradient Elements" figure. Per variable, the
// largest |element| of the epoch's gradient (highest_gradient, solid) and of
// the accumulated gradient (highest_accumulated, dashed), one colour per
// variable.

import {OVERVIEW_COLUMNS, RAW_HIGHEST_COLUMNS, fetchOverviewStats, fetchZoomedStats} from '../api.js';
import {createCanvas, drawLineChart, drawMessage, extent, formatNumber, mergeExtents} from '../lib/charts.js';
import {columnOf, variableLine, xText} from '../lib/data.js';
import {axisOf} from '../lib/axis.js';
import {checkbox} from '../lib/dom.js';
import {epochDomain, loadPanels, runPanels, variableColors, variableLegend, viewSection, yDomainsOf} from '../lib/panels.js';
import {assignRoleGroups, extremesText, medianBand, pickFilter, roleLegend, withDescription} from '../lib/roles.js';

const HEIGHT = 320;

export function createHighestView(state) {
  const options = {normalize: true, log: false};
  const {section, controls, body} = viewSection('highest', 'Highest gradient elements',
    'Largest |element| of each variable\'s epoch gradient (highest_gradient, solid) ' +
    'and of its accumulated gradient (highest_accumulated, dashed), both divided by the ' +
    'variable\'s largest accumulated_max_abs over all epochs as in the seed figure. ' +
    'Untick "Normalize" for the raw max_abs and accumulated_max_abs. Drag across a chart to zoom into a range, double-click to see it all.');
  controls.append(
    checkbox('Normalize per variable', options.normalize,
      (value) => { options.normalize = value; render(); }, {control: 'highest-normalize'}),
    checkbox('Log y axis', options.log, (value) => { options.log = value; render(); },
      {control: 'highest-log'}));
  let generation = 0;

  // The server sends the seed's normalized curves (both divided by the
  // variable's largest accumulated_max_abs over all epochs); the raw ones
  // are the max_abs and accumulated_max_abs statistics.
  function curves(data, variable) {
    if (options.normalize) {
      return {
        gradient: variableLine(data, variable, (part) => part.highest_gradient || []),
        accumulated: variableLine(data, variable, (part) => part.highest_accumulated || []),
      };
    }
    return {
      gradient: variableLine(data, variable, columnOf(data, 'max_abs')),
      accumulated: variableLine(data, variable, columnOf(data, 'accumulated_max_abs')),
    };
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const columns = options.normalize ? OVERVIEW_COLUMNS : RAW_HIGHEST_COLUMNS;
    const loaded = await loadPanels(panels, (panel) => withDescription(panel, state,
      fetchOverviewStats(panel.run, state.source, panel.width, columns)));
    if (mine !== generation) return;
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
    }
    const {byRole, roleColor} = assignRoleGroups(state, loaded);
    const {variables: shown, colorOf} = variableColors(loaded.filter((panel) => !panel.groups));
    const yDomainOf = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.map((variable) => {
      const {gradient, accumulated} = curves(panel.data, variable);
      return mergeExtents([extent(gradient.y, options.log), extent(accumulated.y, options.log)]);
    })), options.log, !options.log);
    const yLabel = options.normalize ? 'highest |element| (normalized)' : 'max_abs (raw)';

    const [gradientStat, accumulatedStat] = options.normalize
      ? ['highest_gradient', 'highest_accumulated'] : ['max_abs', 'accumulated_max_abs'];
    const pick = pickFilter(state);
    body.prepend(variableLegend(shown, colorOf, [
      {label: gradientStat}, {label: accumulatedStat, dashed: true}], pick));
    if (byRole.length) body.prepend(roleLegend(byRole, roleColor, pick));
    for (const panel of loaded) {
      const canvas = createCanvas('highest', panel.width, HEIGHT, `Highest gradient elements of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      if (!panel.variables.length) {
        drawMessage(canvas, 'No variable matches the filter');
        continue;
      }
      const epochs = panel.data.epochs;
      const names = new Set(panel.variables.map((variable) => variable.name));
      // The variables' lines of one body (the overview or a zoomed range).
      const linesOf = (data) => {
        if (panel.groups) return roleLinesOf(data, panel);
        const series = [];
        for (const variable of data.variables.filter((v) => names.has(v.name))) {
          const {gradient, accumulated} = curves(data, variable);
          const describe = (stat) => (x, y) => [variable.name, `${panel.run}, ${xText(data, axisOf(panel.info), x)}`, `${stat}: ${formatNumber(y)}`];
          series.push({
            label: variable.name, color: colorOf(variable), marker: epochs.length <= 40 ? 'tick' : null,
            x: gradient.x, y: gradient.y,
            describe: describe(gradientStat),
          });
          series.push({
            label: variable.name, color: colorOf(variable), dash: [6, 4],
            x: accumulated.x, y: accumulated.y,
            describe: describe(accumulatedStat),
          });
        }
        return {series, resolution: data.buckets ? 'envelope' : 'full'};
      };
      // One line per role of a deep model's blocks: the medians over depth
      // of both curves, the min–max band of the solid one.
      function roleLinesOf(data) {
        const byName = new Map(data.variables.map((variable) => [variable.name, variable]));
        const series = [];
        const bands = [];
        for (const group of panel.groups) {
          const color = roleColor.get(group.label);
          const members = group.members.filter((member) => byName.has(member.name))
            .map((member) => ({name: member.name, ...curves(data, byName.get(member.name))}));
          if (!members.length) continue;
          const gradient = medianBand(members.map(({name, gradient: line}) => ({name, ...line})));
          const accumulated = medianBand(members.map(({name, accumulated: line}) => ({name, ...line})));
          const what = group.role ? `${group.label}: median of ${members.length} blocks` : group.label;
          const describe = (band, stat) => (vx, vy) => {
            const i = band.x.indexOf(vx);
            return [what, `${panel.run}, ${xText(data, axisOf(panel.info), vx)}`, `${stat}: ${formatNumber(vy)}`,
              ...(group.role ? extremesText(band, i) : [])];
          };
          if (group.role) bands.push({color, points: gradient.x.map((vx, i) => [vx, gradient.low[i], gradient.high[i]])});
          series.push({label: group.label, color, x: gradient.x, y: gradient.median, describe: describe(gradient, gradientStat)});
          series.push({label: group.label, color, dash: [6, 4], x: accumulated.x, y: accumulated.median,
            describe: describe(accumulated, accumulatedStat)});
        }
        return {series, bands, resolution: data.buckets ? 'envelope' : 'full'};
      }
      drawLineChart(canvas, {
        xLabel: axisOf(panel.info), yLabel, xInteger: true, xDomain: epochDomain(epochs), yDomain: yDomainOf(panel),
        yLog: options.log, ...linesOf(panel.data),
        zoomData: panel.data.buckets
          ? (range) => fetchZoomedStats(panel.run, state.source, range, panel.width, columns).then(linesOf)
          : null,
        legend: [
          {label: gradientStat, color: '#5f6368'},
          {label: accumulatedStat, color: '#5f6368', dash: [6, 4]},
        ],
      });
    }
  }

  return {id: 'highest', section, render};
}
