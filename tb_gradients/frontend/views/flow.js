// View 4: gradient flow at one epoch. A bar pair (mean_abs, max_abs) per
// variable in input → output order on a log axis, so that layers whose
// gradients vanish or explode stand out from their neighbours. When the
// variables' names repeat a block (./variables `depth` and `role`), the
// bars become depth profiles: mean_abs against depth, one line per role,
// which stays readable at hundreds of variables.

import {OVERVIEW_COLUMNS, fetchOverviewStats, fetchVariableStats} from '../api.js';
import {createCanvas, drawBarChart, drawLineChart, drawMessage, extent, formatNumber, mergeExtents} from '../lib/charts.js';
import {STAT_COLORS, paletteColor, paletteDash} from '../lib/colors.js';
import {columnOf, statIndex, variableLine} from '../lib/data.js';
import {atText, axisOf, byAxis} from '../lib/axis.js';
import {axisPlayers} from '../lib/window_player.js';
import {loadPanels, runPanels, viewSection, yDomainsOf} from '../lib/panels.js';
import {withDescription} from '../lib/roles.js';

const HEIGHT = 340;
const PROFILE_STAT = 'mean_abs';

// The depth profiles of a panel: per role with a depth, its variables in
// depth order ({role, members: [{variable, depth}]}), roles in model order.
export function depthProfiles(variables, described) {
  const byName = new Map(described.map((variable) => [variable.name, variable]));
  const roles = new Map();
  for (const variable of variables) {
    const place = byName.get(variable.name);
    if (!place || place.depth === null || place.depth === undefined) continue;
    if (!roles.has(place.role)) roles.set(place.role, []);
    roles.get(place.role).push({variable, depth: place.depth});
  }
  return [...roles].map(([role, members]) => ({role, members: members.sort((a, b) => a.depth - b.depth)}));
}
const BARS = [
  {stat: 'mean_abs', color: STAT_COLORS.mean_abs},
  {stat: 'max_abs', color: STAT_COLORS.max_abs},
];

export function createFlowView(state) {
  const {section, controls, body} = viewSection('flow', 'Gradient flow',
    'Mean |element| (mean_abs) and largest |element| (max_abs) of every variable ' +
    'at one epoch, input → output, log axis. The y scale spans all epochs, so ' +
    'moving the slider shows how the flow changes. For a model of repeated blocks (a transformer, ' +
    'a ResNet), mean_abs against depth instead, one line per role (query kernel, MLP output, …).');
  // One slider per x axis (epoch runs, window runs); each at its right end
  // follows the latest value (live runs).
  const players = axisPlayers((axis) => ({
    slider: `flow-${axis}`, label: `flow-${axis}-label`, aria: `${axis} of the gradient flow`,
  }), (axis) => draw(axis), (axis, epoch) => state.remember?.({at: epoch}));
  controls.append(...players.rows);

  let drawn = [];
  let yDomainOf = () => [0.1, 10];
  let generation = 0;

  // The statistics vectors of one epoch: a row of the body; when the body
  // is a long run's envelope (buckets), the bucket that holds that epoch
  // alone (the latest one always is), else the epoch fetched alone.
  async function epochValues(panel, shown) {
    let data = panel.data;
    let vectorOf = (variable, row) => variable.values[row];
    let row;
    if (data.buckets) {
      const {first, last} = data.buckets;
      row = first.indexOf(shown);
      if (row >= 0 && last[row] === shown) {
        vectorOf = (variable, k) => variable.min.values[k];
      } else {
        data = await fetchVariableStats(panel.run, state.source, {start: shown, end: shown}, OVERVIEW_COLUMNS);
        row = data.epochs.indexOf(shown);
      }
    } else {
      row = data.epochs.indexOf(shown);
    }
    const byName = new Map(data.variables.map((variable) => [variable.name, vectorOf(variable, row)]));
    return (variable, stat) => byName.get(variable.name)?.[statIndex(data, stat)] ?? null;
  }

  async function draw(axis) {
    const player = players.player(axis);
    const epoch = player.current();
    player.show(epoch);
    await Promise.all(drawn.filter((item) => axisOf(item.panel.info) === axis).map(async (item) => {
      const {panel, canvas} = item;
      const data = panel.data;
      if (!panel.variables.length || !data.epochs.length) {
        drawMessage(canvas, data.epochs.length ? 'No variable matches the filter' : 'No epochs yet');
        return;
      }
      // A shorter run shows its last epoch not after the chosen one.
      const shown = data.epochs.filter((e) => e <= epoch).pop() ?? data.epochs[0];
      const ticket = item.ticket = (item.ticket || 0) + 1;
      const value = await epochValues(panel, shown);
      if (ticket !== item.ticket) return;  // a later epoch was chosen meanwhile

      const at = atText(panel.info, shown);
      if (panel.profiles) {
        const depths = panel.profiles.flatMap(({members}) => members.map((member) => member.depth));
        drawLineChart(canvas, {
          title: `${shown === epoch ? at : `${at} (latest ≤ ${epoch})`}: ${PROFILE_STAT} by depth, one line per role`,
          xLabel: 'depth (block)', xInteger: true,
          xDomain: [Math.min(...depths), Math.max(Math.max(...depths), Math.min(...depths) + 1)],
          yLabel: PROFILE_STAT, yLog: true, yDomain: yDomainOf(panel),
          legend: panel.profiles.map(({role}, k) => ({label: role, color: paletteColor(k), dash: paletteDash(k), kind: 'line'})),
          series: panel.profiles.map(({role, members}, k) => ({
            label: role, color: paletteColor(k), dash: paletteDash(k), marker: 'dot',
            x: members.map((member) => member.depth),
            y: members.map((member) => value(member.variable, PROFILE_STAT)),
            describe: (vx, vy) => {
              const member = members.find((item) => item.depth === vx);
              return [member ? member.variable.name : role, `${panel.run}, ${at}, block ${vx}`,
                `${PROFILE_STAT}: ${formatNumber(vy)}`];
            },
          })),
        });
        canvas.dataset.profiles = String(panel.profiles.length);
        return;
      }
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
    }));
  }

  async function render() {
    const mine = ++generation;
    const panels = runPanels(body, state);
    const loaded = await loadPanels(panels, (panel) => withDescription(panel, state,
      fetchOverviewStats(panel.run, state.source, panel.width)));
    if (mine !== generation) return;
    for (const panel of loaded) {
      panel.variables = panel.data.variables.filter((variable) => state.matches(variable.name));
      const profiles = panel.described.structure ? depthProfiles(panel.variables, panel.described.variables) : [];
      panel.profiles = profiles.length ? profiles : null;
    }
    const groups = byAxis(loaded, (panel) => panel.info);
    const lists = new Map();
    for (const [axis, members] of groups) {
      lists.set(axis, [...new Set(members.flatMap((panel) => panel.data.epochs))].sort((a, b) => a - b));
    }
    players.setEpochs(lists);
    players.select(state.at ?? null);
    yDomainOf = yDomainsOf(state, loaded, (panel) => mergeExtents(panel.variables.flatMap(
      (variable) => BARS.map(({stat}) => extent(variableLine(panel.data, variable, columnOf(panel.data, stat)).y, true)))), true, false);
    drawn = loaded.map((panel) => {
      const canvas = createCanvas('flow', panel.width, HEIGHT, `Gradient flow of ${panel.run}`);
      canvas.dataset.run = panel.run;
      panel.element.append(canvas);
      return {panel, canvas};
    });
    await Promise.all([...groups.keys()].map(draw));
  }

  return {id: 'flow', section, render};
}
