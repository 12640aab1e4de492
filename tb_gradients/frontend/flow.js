// View 4: gradient flow at one epoch. A bar pair (mean_abs, max_abs) per
// variable in input → output order on a log axis, so that layers whose
// gradients vanish or explode stand out from their neighbours.

import {fetchVariableStats} from './api.js';
import {createCanvas, drawBarChart, drawMessage, extent, formatNumber, mergeExtents} from './charts.js';
import {STAT_COLORS} from './colors.js';
import {statColumn, statIndex} from './data.js';
import {el} from './dom.js';
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
  const slider = el('input', {
    attrs: {type: 'range', min: 0, max: 0, step: 1, value: 0, id: 'flow-epoch', 'aria-label': 'Epoch of the gradient flow'},
    dataset: {control: 'flow-epoch'},
  });
  const label = el('span', {className: 'slider-label'});
  controls.append(el('label', {className: 'slider'}, [el('span', {text: 'Epoch '}), slider, label]));

  let epochs = [];
  let chosenEpoch = null;  // null follows the latest epoch (live runs)
  let drawn = [];
  let yDomainOf = () => [0.1, 10];
  let generation = 0;

  slider.addEventListener('input', () => {
    chosenEpoch = Number(slider.value) === epochs.length - 1 ? null : epochs[Number(slider.value)];
    draw();
  });

  function currentEpoch() {
    if (!epochs.length) return null;
    return chosenEpoch !== null && epochs.includes(chosenEpoch) ? chosenEpoch : epochs[epochs.length - 1];
  }

  function draw() {
    const epoch = currentEpoch();
    label.textContent = epoch === null ? '–' : String(epoch);
    for (const {panel, canvas} of drawn) {
      const data = panel.data;
      if (!panel.variables.length || !data.epochs.length) {
        drawMessage(canvas, data.epochs.length ? 'No variable matches the filter' : 'No epochs yet');
        continue;
      }
      // A shorter run shows its last epoch not after the chosen one.
      const shown = data.epochs.filter((e) => e <= epoch).pop() ?? data.epochs[0];
      const row = data.epochs.indexOf(shown);
      const value = (variable, stat) => variable.values[row]?.[statIndex(data, stat)] ?? null;
      drawBarChart(canvas, {
        title: shown === epoch ? `epoch ${shown}` : `epoch ${shown} (latest ≤ ${epoch})`,
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
            `${panel.run}, epoch ${shown}, shape [${variable.shape.join(', ')}]`,
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
    const all = new Set();
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
      panel.data.epochs.forEach((epoch) => all.add(epoch));
    }
    epochs = [...all].sort((a, b) => a - b);
    slider.max = String(Math.max(0, epochs.length - 1));
    slider.disabled = epochs.length < 2;
    slider.value = String(Math.max(0, epochs.indexOf(currentEpoch())));
    yDomainOf = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.flatMap(
      (variable) => BARS.map(({stat}) => extent(statColumn(panel.data, variable, stat), true)))), true, false);
    drawn = loaded.map((panel) => {
      const canvas = createCanvas('flow', panel.width, HEIGHT, `Gradient flow of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      return {panel, canvas};
    });
    draw();
  }

  return {id: 'flow', section, render};
}
