// Line charts of deep models. Past MANY_LINES variables one line each is
// spaghetti; when the names repeat a block (./variables `structure`), a
// chart draws one line per role instead: the median over depth, with the
// min–max band, and its hover names the variables at both ends of the
// band. Variables outside the blocks (embedding, head) keep their own
// line. `state.lines` chooses: 'auto' (by role past MANY_LINES), 'roles'
// or 'variables'; it lives in the URL.

import {fetchVariables} from '../api.js';
import {formatNumber} from './charts.js';
import {paletteColor} from './colors.js';
import {variableLegend} from './panels.js';

export const MANY_LINES = 40;
export const LINE_MODES = ['auto', 'roles', 'variables'];

// Whether a panel's charts draw by role (its `described` is the run's
// ./variables body).
export function drawsByRole(state, panel) {
  if (!panel.described?.structure || state.lines === 'variables') return false;
  return state.lines === 'roles' || panel.variables.length > MANY_LINES;
}

// [{label, role, members: [variable]}]: per role of the blocks its
// variables, then each variable outside them alone, in model order of
// their first member.
export function roleGroups(variables, described) {
  const byName = new Map(described.variables.map((variable) => [variable.name, variable]));
  const groups = new Map();
  for (const variable of variables) {
    const place = byName.get(variable.name);
    const role = Boolean(place) && place.depth !== null && place.depth !== undefined;
    const key = role ? place.role : variable.name;
    if (!groups.has(key)) groups.set(key, {label: key, role, members: []});
    groups.get(key).members.push(variable);
  }
  return [...groups.values()];
}

// The median, lowest and highest of several lines at each x where any of
// them has a finite value, with the names of the lowest and highest:
// {x, median, low, high, lowName, highName}. `lines`: [{name, x, y}].
export function medianBand(lines) {
  const byX = new Map();
  for (const {name, x, y} of lines) {
    x.forEach((vx, i) => {
      const vy = y[i];
      if (vy === null || vy === undefined || !Number.isFinite(vy)) return;
      if (!byX.has(vx)) byX.set(vx, []);
      byX.get(vx).push([vy, name]);
    });
  }
  const band = {x: [], median: [], low: [], high: [], lowName: [], highName: []};
  for (const vx of [...byX.keys()].sort((a, b) => a - b)) {
    const values = byX.get(vx).sort((a, b) => a[0] - b[0]);
    const n = values.length;
    band.x.push(vx);
    band.median.push(n % 2 ? values[(n - 1) / 2][0] : (values[n / 2 - 1][0] + values[n / 2][0]) / 2);
    band.low.push(values[0][0]);
    band.high.push(values[n - 1][0]);
    band.lowName.push(values[0][1]);
    band.highName.push(values[n - 1][1]);
  }
  return band;
}

// A panel's statistics body (the promise `stats`), with its run's
// ./variables body (depth and role) kept as `panel.described`.
export async function withDescription(panel, state, stats) {
  const [data, described] = await Promise.all([stats, fetchVariables(panel.run, state.source)]);
  panel.described = described;
  return data;
}

// Sets each panel's `groups` (roleGroups, or null when it draws a line per
// variable); returns the panels drawn by role and one colour per group.
export function assignRoleGroups(state, panels) {
  for (const panel of panels) {
    panel.groups = drawsByRole(state, panel) ? roleGroups(panel.variables, panel.described) : null;
  }
  const byRole = panels.filter((panel) => panel.groups);
  return {byRole, roleColor: groupColors(byRole.map((panel) => panel.groups))};
}

// What a legend entry picked in a view does: filter to its variables.
export function pickFilter(state) {
  return (item) => state.setFilter?.(filterFor(item.name, item.role));
}

// The legend of the groups of the panels drawn by role.
export function roleLegend(byRole, roleColor, pick) {
  const roles = new Set(byRole.flatMap((panel) => panel.groups.filter((g) => g.role).map((g) => g.label)));
  const legend = variableLegend([...roleColor.keys()].map((label) => ({name: label, role: roles.has(label)})),
    (item) => roleColor.get(item.name), [], pick);
  legend.dataset.legend = 'roles';
  return legend;
}

// The hover lines naming the ends of a band (medianBand) at its i-th x.
export function extremesText(band, i) {
  return [`lowest ${formatNumber(band.low[i])} (${band.lowName[i]})`,
    `highest ${formatNumber(band.high[i])} (${band.highName[i]})`];
}

// One colour per group label across all panels, in order of appearance.
export function groupColors(groupLists) {
  const colors = new Map();
  for (const groups of groupLists) {
    for (const group of groups) if (!colors.has(group.label)) colors.set(group.label, paletteColor(colors.size));
  }
  return colors;
}

// The variable filter (a regular expression, index.js) that keeps exactly
// the variables of a legend entry: a variable's name, or every variable of
// a role (its `#` standing for any block index, as lib/analysis writes it).
export function filterFor(label, role) {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return `^${role ? escaped.replaceAll('#', '\\d+[a-z]?') : escaped}$`;
}
