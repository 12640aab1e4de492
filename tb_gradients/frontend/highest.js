// View 2: the seed's "Highest Gradient Elements" figure. Per variable, the
// largest |element| of the epoch's gradient (highest_gradient, solid) and of
// the accumulated gradient (highest_accumulated, dashed), one colour per
// variable.

import {fetchVariableStats} from './api.js';
import {createCanvas, drawLineChart, drawMessage, extent, formatNumber, mergeExtents} from './charts.js';
import {checkbox} from './dom.js';
import {epochDomain, loadPanels, runPanels, variableColors, variableLegend, viewSection, yDomainsOf} from './panels.js';

const HEIGHT = 320;

// The seed divides both curves of a variable by the largest |element| its
// accumulated gradient reaches over all epochs, so that variables of very
// different magnitudes share one axis.
function variableScale(variable) {
  const [, accumulatedMax] = extent(variable.highest_accumulated || []) || [0, 0];
  if (accumulatedMax > 0) return accumulatedMax;
  const [, gradientMax] = extent(variable.highest_gradient || []) || [0, 0];
  return gradientMax > 0 ? gradientMax : 1;
}

export function createHighestView(state) {
  const options = {normalize: true, log: false};
  const {section, controls, body} = viewSection('highest', 'Highest gradient elements',
    'Largest |element| of each variable\'s epoch gradient (highest_gradient, solid) ' +
    'and of its accumulated gradient (highest_accumulated, dashed). Normalized: ' +
    'both divided by the variable\'s largest highest_accumulated over all epochs, as in the seed figure.');
  controls.append(
    checkbox('Normalize per variable', options.normalize,
      (value) => { options.normalize = value; render(); }, {control: 'highest-normalize'}),
    checkbox('Log y axis', options.log, (value) => { options.log = value; render(); },
      {control: 'highest-log'}));
  let generation = 0;

  function curves(variable) {
    const factor = options.normalize ? variableScale(variable) : 1;
    const divide = (values) => (values || []).map((value) => (value === null ? null : value / factor));
    return {
      gradient: divide(variable.highest_gradient),
      accumulated: divide(variable.highest_accumulated),
      factor,
    };
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => fetchVariableStats(panel.run, state.source));
    if (mine !== generation) return;
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
    }
    const {variables: shown, colorOf} = variableColors(loaded);
    const yDomainOf = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.map((variable) => {
      const {gradient, accumulated} = curves(variable);
      return extent([...gradient, ...accumulated], options.log);
    })), options.log, !options.log);
    const yLabel = options.normalize ? 'highest |element| (normalized)' : 'highest |element|';

    body.prepend(variableLegend(shown, colorOf, [
      {label: 'highest_gradient'}, {label: 'highest_accumulated', dashed: true}]));
    for (const panel of loaded) {
      const canvas = createCanvas('highest', panel.width, HEIGHT, `Highest gradient elements of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      if (!panel.variables.length) {
        drawMessage(canvas, 'No variable matches the filter');
        continue;
      }
      const epochs = panel.data.epochs;
      const series = [];
      for (const variable of panel.variables) {
        const {gradient, accumulated, factor} = curves(variable);
        const describe = (stat, raw) => (x, y) => {
          const i = epochs.indexOf(x);
          const lines = [variable.name, `${panel.run}, epoch ${x}`, `${stat}: ${formatNumber(raw[i])}`];
          if (options.normalize) lines.push(`normalized: ${formatNumber(y)} (÷ ${formatNumber(factor)})`);
          return lines;
        };
        series.push({
          label: variable.name, color: colorOf(variable), marker: epochs.length <= 40 ? 'tick' : null,
          points: epochs.map((epoch, i) => [epoch, gradient[i]]),
          describe: describe('highest_gradient', variable.highest_gradient),
        });
        series.push({
          label: variable.name, color: colorOf(variable), dash: [6, 4],
          points: epochs.map((epoch, i) => [epoch, accumulated[i]]),
          describe: describe('highest_accumulated', variable.highest_accumulated),
        });
      }
      drawLineChart(canvas, {
        xLabel: 'epoch', yLabel, xInteger: true, xDomain: epochDomain(epochs), yDomain: yDomainOf(panel),
        yLog: options.log, series,
        legend: [
          {label: 'highest_gradient', color: '#5f6368'},
          {label: 'highest_accumulated', color: '#5f6368', dash: [6, 4]},
        ],
      });
    }
  }

  return {id: 'highest', section, render};
}
