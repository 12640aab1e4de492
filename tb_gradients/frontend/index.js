// Entry point of the Gradients tab. TensorBoard loads this module in the
// plugin's iframe and calls render(); everything the tab shows is built
// here from the toolbar state and the views' modules.

import {clearCache, fetchRuns, fetchScalars} from './api.js';
import {axisOf, recordsText} from './lib/axis.js';
import {checkbox, el, errorBox, notice, option} from './lib/dom.js';
import {installDownloads} from './lib/download.js';
import {LINE_MODES, MANY_LINES} from './lib/roles.js';
import {createFindingsPanel} from './views/findings.js';
import {createFlowView} from './views/flow.js';
import {createGradientMapView} from './views/gradient_map.js';
import {createHeatmapView} from './views/heatmap.js';
import {createHighestView} from './views/highest.js';
import {createLayerStatsView} from './views/layer_stats.js';
import {createNormsView} from './views/norms.js';
import {healthBadge, readErrorsBadge} from './lib/panels.js';
import {createRecurrentView} from './views/recurrent/recurrent.js';
import {createStepsView} from './views/steps.js';
import {readUrlState, writeUrlState} from './url_state.js';
// The modules the views import in turn, named here too so that the browser
// fetches every module of the tab in one round after this one, not one
// round per level of imports (each round is a request's latency).
import './lib/charts.js';
import './lib/colors.js';
import './lib/data.js';
import './lib/window_player.js';
import './views/recurrent/gates.js';
import './views/recurrent/timestep_charts.js';
import './views/recurrent/timestep_data.js';
import './views/recurrent/timestep_views.js';

const AUTO_REFRESH_MS = 30000;
const EMPTY_MESSAGE = 'No gradient data in this run: pass GradientTensorBoard to fit';

// What every view reads: the runs, the user's choices and the variable
// filter; `view`, `variable` and `at` are the view in focus, the heatmap's
// variable (null: the first ones) and the flow and heatmap sliders' epoch
// or step (null: the latest). All but sharedY live in the URL
// (url_state.js); views report the user's changes with remember().
const state = {
  runs: [],
  selected: [],
  source: 'training',
  filter: '',
  view: null,
  variable: null,
  at: null,
  sharedY: true,
  lines: 'auto',  // lib/roles.js: how line charts of many variables draw
  remember: () => {},
  filterTest: () => true,
  health: new Map(),  // "source:run" -> promise of {source, nanEpochs, infEpochs}
  healthOf: (info) => loadHealth(info),
  selectedRuns() {
    return this.runs.filter((info) => this.selected.includes(info.run));
  },
  matches(name) {
    return this.filterTest(name);
  },
};

// A filter matching exactly one variable name.
function exactFilter(name) {
  return `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

// A filter is a regular expression when it parses as one, else a plain
// substring (so "dense[" still filters instead of erroring).
function compileFilter(text) {
  if (!text) return {test: () => true, kind: ''};
  try {
    const pattern = new RegExp(text);
    return {test: (name) => pattern.test(name), kind: 'regex'};
  } catch (error) {
    return {test: (name) => name.includes(text), kind: 'substring'};
  }
}

// Epochs at which a run's gradients held NaN / Inf, from the global scalars
// of the source on screen (the run's first source when it lacks that one).
// Cached per run and source: the badges follow the source picker.
async function loadHealth(info) {
  const source = info.sources.includes(state.source) ? state.source : info.sources[0];
  const key = `${source}:${info.run}`;
  if (!state.health.has(key)) {
    state.health.set(key, fetchScalars(info.run, source).then((data) => {
      const epochsWhere = (stat) => data.epochs.filter((_, i) => (data.series[stat] || [])[i] > 0);
      return {source, axis: axisOf(info), nanEpochs: epochsWhere('nan_count'), infEpochs: epochsWhere('inf_count')};
    }));
  }
  return state.health.get(key);
}

function loadStylesheet() {
  const link = el('link', {attrs: {rel: 'stylesheet', href: new URL('./style.css', import.meta.url).href}});
  const loaded = new Promise((resolve) => {
    link.addEventListener('load', resolve);
    link.addEventListener('error', resolve);  // unstyled beats blank
  });
  document.head.append(link);
  return loaded;
}

let started = false;

// Tells tests and the render-time benchmark that every view has drawn: a
// body attribute to wait on, an event, and a performance mark whose first
// occurrence is the time to first complete render.
function announceRendered() {
  document.body.dataset.rendered = 'true';
  performance.mark('gradients-rendered');
  document.body.dispatchEvent(new CustomEvent('gradients-rendered', {bubbles: true}));
}

export async function render() {
  if (started) return;
  started = true;
  // The run listing is requested while the stylesheet loads.
  const runsRequest = fetchRuns().catch(() => null);
  await loadStylesheet();
  await runsRequest;
  document.body.classList.add('gradients-tab');
  const linked = readUrlState();
  state.selected = linked.runs;
  if (linked.source) state.source = linked.source;
  state.filter = linked.filter || '';
  state.view = linked.view;
  state.variable = linked.variable;
  state.at = linked.at;
  if (LINE_MODES.includes(linked.lines)) state.lines = linked.lines;

  // ---- toolbar
  const runPicker = el('div', {className: 'run-picker', attrs: {id: 'run-picker', role: 'group', 'aria-label': 'Runs'},
    dataset: {control: 'run-picker'}});
  const sourcePicker = el('select', {attrs: {id: 'source-picker', 'aria-label': 'Gradient source'},
    dataset: {control: 'source-picker'}});
  const sourceField = el('label', {className: 'field'}, [el('span', {text: 'Source '}), sourcePicker]);
  const filterInput = el('input', {attrs: {type: 'search', id: 'variable-filter', placeholder: 'Filter variables (substring or regex)',
    'aria-label': 'Variable filter', spellcheck: 'false'}, dataset: {control: 'variable-filter'}});
  const filterKind = el('span', {className: 'muted filter-kind'});
  const linesPicker = el('select', {attrs: {id: 'lines-picker', 'aria-label': 'Lines of many variables'},
    dataset: {control: 'lines'}}, [
    option('auto', `auto (by role past ${MANY_LINES} variables)`, state.lines === 'auto'),
    option('roles', 'by role', state.lines === 'roles'),
    option('variables', 'each variable', state.lines === 'variables'),
  ]);
  linesPicker.addEventListener('change', () => {
    state.lines = linesPicker.value;
    writeUrl();
    renderViews();
  });
  const refreshButton = el('button', {text: '⟳ Refresh', attrs: {type: 'button', id: 'refresh-button'},
    dataset: {control: 'refresh'}});
  const status = el('span', {className: 'muted status', attrs: {'aria-live': 'polite'}});
  const errorArea = el('div', {attrs: {id: 'error-box'}});
  const main = el('main');
  let autoRefreshTimer = null;

  const toolbar = el('header', {className: 'toolbar'}, [
    el('div', {className: 'toolbar-group runs-group'}, [
      el('div', {className: 'toolbar-label'}, [
        el('span', {text: 'Runs'}),
        el('button', {text: 'all', className: 'link', attrs: {type: 'button'}, dataset: {control: 'select-all-runs'},
          on: {click: () => selectRuns(state.runs.map((info) => info.run))}}),
        el('button', {text: 'first', className: 'link', attrs: {type: 'button'},
          on: {click: () => selectRuns(state.runs.slice(0, 1).map((info) => info.run))}}),
      ]),
      runPicker,
    ]),
    el('div', {className: 'toolbar-group'}, [
      sourceField,
      el('label', {className: 'field'}, [filterInput, filterKind]),
      el('label', {className: 'field', title: 'Line charts of many variables: one line per role of the ' +
        'repeated blocks (median over depth, min–max band) or one per variable'}, [
        el('span', {text: 'Lines '}),
        linesPicker,
      ]),
      checkbox('Same y scale for all runs', state.sharedY, (value) => {
        state.sharedY = value;
        renderViews();
      }, {control: 'shared-y'}),
      el('div', {className: 'field'}, [
        refreshButton,
        checkbox(`Auto-refresh (${AUTO_REFRESH_MS / 1000} s)`, false, setAutoRefresh, {control: 'auto-refresh'}),
      ]),
      status,
    ]),
  ]);

  const findingsPanel = createFindingsPanel(state, {open: openFinding, isOpen: findingIsOpen});
  const views = [
    createNormsView(state),
    createGradientMapView(state, {open: openFinding}),
    createHighestView(state),
    createLayerStatsView(state),
    createFlowView(state),
    createStepsView(state),
    createHeatmapView(state),
    createRecurrentView(state),
  ];
  const emptyArea = el('div');
  main.append(emptyArea, findingsPanel.section, ...views.map((view) => view.section));
  document.body.append(toolbar, errorArea, main);
  installDownloads(main);
  filterInput.value = state.filter;
  applyFilter();

  // ---- URL state

  function writeUrl() {
    writeUrlState({runs: state.selected, source: state.source, filter: state.filter,
      view: state.view, variable: state.variable, at: state.at,
      lines: state.lines === 'auto' ? null : state.lines});
  }

  state.remember = (changes) => {
    Object.assign(state, changes);
    writeUrl();
    findingsPanel.markOpen();
  };

  // Set when the view in focus must be scrolled to once the views have
  // drawn: on opening the tab, and when a finding is opened.
  let focusPending = Boolean(state.view);
  let focusedAt = 0;

  function focusView() {
    focusPending = false;
    const section = state.view && document.getElementById(`view-${state.view}`);
    for (const node of main.querySelectorAll('[data-focused]')) delete node.dataset.focused;
    if (!section || section.hidden) return;
    section.dataset.focused = 'true';
    focusedAt = performance.now();
    section.scrollIntoView({block: 'start'});
  }

  // The view in focus follows the user's scrolling: the one under the top
  // part of the window (the one scrolled to stays while it is in view).
  function viewInFocus() {
    if (window.scrollY < 8) return null;
    const line = Math.min(120, window.innerHeight / 3);
    const current = state.view && document.getElementById(`view-${state.view}`);
    if (current && !current.hidden) {
      const box = current.getBoundingClientRect();
      if (box.top >= -1 && box.top < window.innerHeight / 2) return state.view;
    }
    for (const view of views) {
      if (view.section.hidden) continue;
      const box = view.section.getBoundingClientRect();
      if (box.bottom > line) return box.top <= line ? view.id : null;
    }
    return null;
  }

  let scrollTimer = null;
  window.addEventListener('scroll', () => {
    clearTimeout(scrollTimer);
    scrollTimer = setTimeout(() => {
      // A scroll into view by the tab itself is not the user's.
      if (focusPending || performance.now() - focusedAt < 400) return;
      const view = viewInFocus();
      if (view !== state.view) state.remember({view});
    }, 200);
  }, {passive: true});

  // ---- findings

  function findingIsOpen(finding) {
    return state.view === finding.view && state.at === finding.at && state.source === finding.source
      && (!finding.variable || state.variable === finding.variable);
  }

  // Opens the evidence of a finding: its source, view, variable (the
  // heatmap's, and the filter of the layer statistics) and epoch or step.
  function openFinding(finding, info) {
    if (info.sources.includes(finding.source)) state.source = finding.source;
    state.view = finding.view;
    state.variable = finding.variable || null;
    state.at = Number.isInteger(finding.at) ? finding.at : null;
    state.filter = finding.view === 'layer-stats' && finding.variable ? exactFilter(finding.variable) : '';
    filterInput.value = state.filter;
    applyFilter();
    updateSourcePicker();
    buildRunPicker();  // badges follow the source
    writeUrl();
    focusPending = true;
    renderViews();
  }

  // ---- errors

  function showError(message) {
    errorArea.replaceChildren(errorBox(message));
  }

  // ---- rendering

  let generation = 0;

  async function renderViews() {
    const mine = ++generation;
    document.body.dataset.rendered = 'false';
    const hasData = state.runs.length > 0;
    emptyArea.replaceChildren(...(hasData ? [] : [notice(EMPTY_MESSAGE)]));
    for (const view of views) view.section.hidden = !hasData || !state.selected.length;
    findingsPanel.section.hidden = !hasData || !state.selected.length;
    if (hasData && !state.selected.length) emptyArea.append(notice('Select a run to see its gradients.'));
    if (hasData && state.selected.length) {
      // The panels' badges fill in when their health arrives; the views do
      // not wait for it.
      // A performance mark per view when it has drawn (`gradients-view-<id>`),
      // for the render-time benchmark's breakdown.
      const findingsDrawn = findingsPanel.render().catch((error) => console.error(error));
      const results = await Promise.allSettled(views.map((view) => view.render().finally(
        () => performance.mark(`gradients-view-${view.id}`))));
      await findingsDrawn;
      results.forEach((result, index) => {
        if (result.status === 'rejected') {
          showError(`The ${views[index].id} view failed: ${result.reason?.message || result.reason}`);
          console.error(result.reason);
        }
      });
    }
    if (mine !== generation) return;
    if (focusPending) focusView();
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    announceRendered();
  }

  function updateSourcePicker() {
    const sources = [];
    for (const info of state.selectedRuns()) {
      for (const source of info.sources) if (!sources.includes(source)) sources.push(source);
    }
    if (!sources.includes(state.source) && sources.length) {
      state.source = sources.includes('training') ? 'training' : sources[0];
    }
    sourcePicker.replaceChildren(...sources.map((source) => option(source, source, source === state.source)));
    sourceField.hidden = sources.length < 2;
  }

  function buildRunPicker() {
    runPicker.replaceChildren();
    for (const info of state.runs) {
      const input = el('input', {attrs: {type: 'checkbox'}, dataset: {control: 'run-checkbox'}});
      input.value = info.run;
      input.checked = state.selected.includes(info.run);
      input.addEventListener('change', () => {
        const chosen = [...runPicker.querySelectorAll('input[type=checkbox]')]
          .filter((box) => box.checked).map((box) => box.value);
        selectRuns(chosen);
      });
      const badgeSlot = el('span', {className: 'badge-slot'});
      const epochs = el('span', {className: 'muted', text: ` ${recordsText(info)}`, dataset: {axis: axisOf(info)}});
      runPicker.append(el('label', {className: 'run-option', title: info.run, dataset: {run: info.run}},
        [input, el('span', {className: 'run-name', text: info.run}), epochs, badgeSlot]));
      // Badges of runs not shown yet load in the background.
      const readErrors = readErrorsBadge(info);
      if (readErrors) badgeSlot.append(readErrors);
      if (!info.sources.length) continue;
      loadHealth(info).then((health) => {
        badgeSlot.replaceChildren(...[readErrors, healthBadge(health)].filter(Boolean));
      }, (error) => {
        badgeSlot.replaceChildren(el('span', {className: 'badge badge-error', text: 'error', title: error.message}));
      });
    }
  }

  function selectRuns(runs) {
    state.selected = state.runs.map((info) => info.run).filter((run) => runs.includes(run));
    for (const box of runPicker.querySelectorAll('input[type=checkbox]')) {
      box.checked = state.selected.includes(box.value);
    }
    updateSourcePicker();
    writeUrl();
    renderViews();
  }

  async function loadRuns() {
    try {
      const data = await fetchRuns();
      errorArea.replaceChildren();
      state.runs = data.runs || [];
    } catch (error) {
      showError(error.message);
      state.runs = [];
      return false;
    }
    const names = state.runs.map((info) => info.run);
    state.selected = state.selected.filter((run) => names.includes(run));
    if (!state.selected.length && names.length) state.selected = [names[0]];
    buildRunPicker();
    updateSourcePicker();
    writeUrl();
    return true;
  }

  async function refresh() {
    clearCache();
    state.health.clear();
    refreshButton.disabled = true;
    try {
      await loadRuns();
      await renderViews();
    } finally {
      refreshButton.disabled = false;
    }
  }

  function setAutoRefresh(enabled) {
    clearInterval(autoRefreshTimer);
    autoRefreshTimer = enabled ? setInterval(() => {
      if (!refreshButton.disabled) refresh();
    }, AUTO_REFRESH_MS) : null;
  }

  // ---- wiring

  refreshButton.addEventListener('click', refresh);
  sourcePicker.addEventListener('change', () => {
    state.source = sourcePicker.value;
    buildRunPicker();  // badges follow the source
    writeUrl();
    renderViews();
  });
  function applyFilter() {
    const compiled = compileFilter(state.filter);
    state.filterTest = compiled.test;
    filterKind.textContent = compiled.kind;
  }
  // A legend entry picked in a view: the filter keeps its variables.
  state.setFilter = (text) => {
    state.filter = text;
    filterInput.value = text;
    applyFilter();
    writeUrl();
    renderViews();
  };
  let filterTimer = null;
  filterInput.addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      state.filter = filterInput.value;
      applyFilter();
      writeUrl();
      renderViews();
    }, 250);
  });
  let resizeTimer = null;
  let lastWidth = window.innerWidth;
  window.addEventListener('resize', () => {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderViews, 250);
  });

  const ok = await loadRuns();
  if (ok) {
    await renderViews();
  } else {
    for (const view of views) view.section.hidden = true;
    announceRendered();
  }
}
