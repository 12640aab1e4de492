// View 4: gradient flow at one epoch. A bar pair (mean_abs, max_abs) per
// variable in input → output order on a log axis, so that layers whose
// gradients vanish or explode stand out from their neighbours.

import {fetchVariableStats} from './api.js';
import {createCanvas, drawBarChart, drawMessage, extent, formatNumber, mergeExtents} from './charts.js';
import {STAT_COLORS} from './colors.js';
import {statColumn, statIndex} from './data.js';
import {atText, axisOf, byAxis} from './axis.js';
import {axisPlayers} from './epoch_player.js';
import {loadPanels, runPanels, viewSection, yDomainsOf} from './panels.js';

const HEIGHT = 340;
const BARS = [
  {stat: 'mean_abs', color: STAT_COLORS.mean_abs},
  {stat: 'max_abs', color: STAT_COLORS.max_abs},
];

export function createFlowView(state) {
  const {section, controls, body} = viewSection('flow', 'Gradient flow',
    'Mean |element| (mean_abs) and largest |element| (max_abs) of every variable ' +
    'at one epoch, input → output, log axis. The y scale spans all epochs, so ' +
    'moving the slider shows how the flow changes.');
  // One slider per x axis (epoch runs, window runs); each at its right end
  // follows the latest value (live runs).
  const players = axisPlayers((axis) => ({
    slider: `flow-${axis}`, label: `flow-${axis}-label`, aria: `${axis} of the gradient flow`,
  }), (axis) => draw(axis));
  controls.append(...players.rows);

  let drawn = [];
  let yDomainOf = () => [0.1, 10];
  let generation = 0;

  function draw(axis) {
    const player = players.player(axis);
    const epoch = player.current();
    player.show(epoch);
    for (const {panel, canvas} of drawn.filter((item) => axisOf(item.panel.info) === axis)) {
      const data = panel.data;
      if (!panel.variables.length || !data.epochs.length) {
        drawMessage(canvas, data.epochs.length ? 'No variable matches the filter' : 'No epochs yet');
        continue;
      }
      // A shorter run shows its last epoch not after the chosen one.
      const shown = data.epochs.filter((e) => e <= epoch).pop() ?? data.epochs[0];
      const row = data.epochs.indexOf(shown);
      const value = (variable, stat) => variable.values[row]?.[statIndex(data, stat)] ?? null;
      const at = atText(panel.info, shown);
      drawBarChart(canvas, {
        title: shown === epoch ? at : `${at} (latest ≤ ${epoch})`,
        yLabel: '|gradient element|', yLog: true, yDomain: yDomainOf(panel),
        bottomMargin: 92,
        categories: panel.variables.map((variable) => variable.name),
        groups: BARS.map(({stat, color}) => ({
          label: stat, color, values: panel.variables.map((variable) => value(variable, stat)),
        })),
        legend: BARS.map(({stat, color}) => ({label: stat, color, kind: 'box'})),
        describe: (index) => {
          const variable = panel.variables[index];
          return [
            variable.name,
            `${panel.run}, ${at}, shape [${variable.shape.join(', ')}]`,
            ...['mean_abs', 'max_abs', 'mean', 'std'].map((stat) => `${stat}: ${formatNumber(value(variable, stat))}`),
          ];
        },
      });
    }
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => fetchVariableStats(panel.run, state.source));
    if (mine !== generation) return;
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
    }
    const groups = byAxis(loaded, (panel) => panel.info);
    const lists = new Map();
    for (const [axis, members] of groups) {
      lists.set(axis, [...new Set(members.flatMap((panel) => panel.data.epochs))].sort((a, b) => a - b));
    }
    players.setEpochs(lists);
    yDomainOf = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.flatMap(
      (variable) => BARS.map(({stat}) => extent(statColumn(panel.data, variable, stat), true)))), true, false);
    drawn = loaded.map((panel) => {
      const canvas = createCanvas('flow', panel.width, HEIGHT, `Gradient flow of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      return {panel, canvas};
    });
    for (const axis of groups.keys()) draw(axis);
  }

  return {id: 'flow', section, render};
}
