// Page structure shared by the views: a section per view and, inside it,
// one panel per selected run laid out side by side so runs can be compared.

import {extent, mergeExtents, niceDomain} from './charts.js';
import {paletteColor} from './colors.js';
import {el, errorBox, notice} from './dom.js';

const PANEL_GAP = 16;
const MIN_PANEL_WIDTH = 320;

export function viewSection(id, title, caption) {
  const controls = el('div', {className: 'view-controls'});
  const body = el('div', {className: 'view-body'});
  const section = el('section', {className: 'view', attrs: {id: `view-${id}`}, dataset: {section: id}}, [
    el('h2', {text: title}),
    caption ? el('p', {className: 'caption', text: caption}) : null,
    controls,
    body,
  ]);
  return {section, controls, body};
}

// Width available to each of `count` side-by-side panels.
export function panelWidth(body, count) {
  const available = Math.max(MIN_PANEL_WIDTH,
    body.clientWidth || document.documentElement.clientWidth - 40);
  const width = Math.floor((available - PANEL_GAP * (count - 1)) / count);
  return Math.max(MIN_PANEL_WIDTH, Math.min(available, width));
}

// A warning badge for runs whose gradients held NaN or Inf values.
export function healthBadge(health) {
  if (!health || (!health.nanEpochs.length && !health.infEpochs.length)) return null;
  const parts = [];
  if (health.nanEpochs.length) parts.push('NaN');
  if (health.infEpochs.length) parts.push('Inf');
  const details = [];
  const at = `at ${health.axis || 'epoch'}s`;
  if (health.nanEpochs.length) details.push(`nan_count > 0 ${at} ${health.nanEpochs.join(', ')}`);
  if (health.infEpochs.length) details.push(`inf_count > 0 ${at} ${health.infEpochs.join(', ')}`);
  return el('span', {
    className: 'badge badge-warning',
    text: `⚠ ${parts.join(' / ')}`,
    title: `${details.join('; ')} (${health.source} source)`,
    dataset: {badge: 'non-finite'},
  });
}

// What a run's read errors (./runs `errors`) say, in one line: the first
// reason, and how many more things were skipped.
export function readErrorsText(info) {
  const errors = Array.isArray(info.errors) ? info.errors : [];
  if (!errors.length) return '';
  const skipped = errors.reduce((count, error) => count + 1 + (Number(error.more) || 0), 0);
  return `${errors[0].reason}${skipped > 1 ? ` (${skipped} series skipped)` : ''}`;
}

// The badge of a run with read errors: "unreadable" when nothing of it can
// be read, "read errors" when some of it was skipped.
export function readErrorsBadge(info) {
  const text = readErrorsText(info);
  if (!text) return null;
  const nothing = !info.sources.length;
  return el('span', {
    className: `badge ${nothing ? 'badge-error' : 'badge-warning'}`,
    text: nothing ? 'unreadable' : 'read errors',
    title: text,
    dataset: {badge: 'read-errors'},
  });
}

/**
 * Replaces `body`'s content with one panel per selected run.
 *
 * Returns [{run, element, width, info}] where `info` is the run's entry of
 * ./runs; panels of runs lacking the chosen source already hold a notice and
 * are returned with `element: null`.
 */
export function runPanels(body, state, {needsSource = true} = {}) {
  body.replaceChildren();
  const row = el('div', {className: 'panels'});
  body.append(row);
  const runs = state.selectedRuns();
  const width = panelWidth(body, runs.length);
  return runs.map((info) => {
    const badgeSlot = el('span');
    const header = el('div', {className: 'panel-header'}, [
      el('span', {className: 'run-name', text: info.run}),
      badgeSlot,
    ]);
    // A failed request shows in the views' own error boxes.
    if (info.sources.length) {
      state.healthOf(info).then((health) => {
        badgeSlot.replaceChildren(...[healthBadge(health)].filter(Boolean));
      }, () => null);
    }
    const content = el('div', {className: 'panel-body'});
    const panel = el('div', {className: 'panel', dataset: {run: info.run}}, [header, content]);
    panel.style.width = `${width}px`;
    row.append(panel);
    if (needsSource && !info.sources.length && readErrorsText(info)) {
      content.append(errorBox(`Nothing of this run can be read: ${readErrorsText(info)}`));
      return {run: info.run, element: null, width, info};
    }
    if (needsSource && !info.sources.includes(state.source)) {
      content.append(notice(`This run has no ${state.source} gradients (sources: ${info.sources.join(', ') || 'none'}).`));
      return {run: info.run, element: null, width, info};
    }
    return {run: info.run, element: content, width, info};
  });
}

// Fetches every usable panel's data; a failed request shows the server's
// message in that panel (the others still draw). Returns the panels that
// have data, so that a view can compute one y scale over all of them before
// drawing.
export async function loadPanels(panels, load) {
  await Promise.all(panels.filter((panel) => panel.element).map(async (panel) => {
    try {
      panel.data = await load(panel);
    } catch (error) {
      panel.element.replaceChildren(errorBox(error.message || String(error)));
      panel.data = undefined;
    }
  }));
  return panels.filter((panel) => panel.element && panel.data !== undefined);
}

// Past this many entries a legend gets a search field.
const SEARCHABLE_LEGEND = 12;

// HTML legend of variable colours (names are logdir data: textContent only).
// Shown once per view instead of inside every small chart. With `pick`,
// each entry is a button: `pick(variable)` (the views set the variable
// filter to it). A long legend can be searched: typing narrows the entries
// shown to those whose name contains the text.
export function variableLegend(variables, colorOf, styles = [], pick = null) {
  const items = variables.map((variable) => {
    const children = [el('span', {className: 'swatch'}), el('span', {text: variable.name})];
    return pick
      ? el('button', {className: 'legend-item link', title: `Show only ${variable.name}`,
        attrs: {type: 'button'}, dataset: {name: variable.name}, on: {click: () => pick(variable)}}, children)
      : el('span', {className: 'legend-item', title: variable.name, dataset: {name: variable.name}}, children);
  });
  items.forEach((item, index) => {
    item.firstChild.style.background = colorOf(variables[index]);
  });
  const styleItems = styles.map((style) => el('span', {className: 'legend-item'}, [
    el('span', {className: `swatch-line ${style.dashed ? 'dashed' : ''}`}),
    el('span', {text: style.label}),
  ]));
  const legend = el('div', {className: 'legend'}, [...styleItems, ...items]);
  if (items.length <= SEARCHABLE_LEGEND) return legend;
  const search = el('input', {className: 'legend-search', attrs: {type: 'search', placeholder: `Find among ${items.length}`,
    'aria-label': 'Find in the legend'}, dataset: {control: 'legend-search'}});
  search.addEventListener('input', () => {
    const text = search.value.toLowerCase();
    items.forEach((item, index) => {
      item.hidden = Boolean(text) && !variables[index].name.toLowerCase().includes(text);
    });
  });
  legend.prepend(search);
  return legend;
}

// The y domain of each panel: one domain over all runs when the user
// compares them on the same scale (the default), else each run's own.
// `extentOf(panel)` gives a panel's data extent (see charts.extent).
export function yDomainsOf(state, loaded, extentOf, log, includeZero) {
  const own = new Map(loaded.map((panel) => [panel, extentOf(panel)]));
  const shared = niceDomain(mergeExtents([...own.values()]), log, includeZero);
  return (panel) => (state.sharedY ? shared : niceDomain(own.get(panel), log, includeZero));
}

// x domain of a run's epochs (or steps: axis.js). Runs keep their own: a 3-epoch run next to a
// 150-epoch one would otherwise be squeezed against the axis.
export function epochDomain(epochs) {
  const range = extent(epochs);
  return range ? [range[0], Math.max(range[1], range[0] + 1)] : [0, 1];
}

// One colour per variable name across all panels (in order of first
// appearance), so a variable keeps its colour from run to run and the
// single legend is right for every panel.
export function variableColors(panels) {
  const colors = new Map();
  const variables = [];
  for (const panel of panels) {
    for (const variable of panel.variables) {
      if (colors.has(variable.name)) continue;
      colors.set(variable.name, paletteColor(colors.size));
      variables.push(variable);
    }
  }
  return {variables, colorOf: (variable) => colors.get(variable.name)};
}
