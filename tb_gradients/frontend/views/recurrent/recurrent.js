// View 7: recurrent layers (the article "How to visualize RNN/LSTM
// gradients"). The gradient of the probe loss with respect to a layer's
// output, per timestep: if it reaches every timestep, the whole sequence
// shapes the weight updates; if it dies out towards the first ones, the
// layer cannot learn long-range dependencies. One layer at a time, matched
// by name across the selected runs (e.g. LSTM vs GRU vs SimpleRNN on the
// same task), runs side by side in four blocks: norm per timestep,
// channels × timesteps heatmap, per-channel plots (or scatter without a
// time axis), per-gate weight gradients.

import {fetchGateHeatmap, fetchGates, fetchTimestepLayers, fetchTimesteps} from '../../api.js';
import {createCanvas, extent, mergeExtents, niceDomain} from '../../lib/charts.js';
import {NAN_COLOR, rgbCss} from '../../lib/colors.js';
import {axisOf} from '../../lib/axis.js';
import {checkbox, el, errorBox, notice, option} from '../../lib/dom.js';
import {availableRecord, windowPlayer} from '../../lib/window_player.js';
import {GATE_DECADES, drawGateHeatmaps, gateCharts, gateExtent, gateSource} from './gates.js';
import {runPanels, viewSection} from '../../lib/panels.js';
import {channelGridHeight} from './timestep_charts.js';
import {MAX_GRID_CHANNELS, drawChannels, drawHeatmap, drawNormCharts, drawScatter,
  heatmapHeight} from './timestep_views.js';
import {MEAN, absPercentile, pooledChannels, sampleValues, timestepGrid, unmaskedCells} from './timestep_data.js';

const EMPTY_MESSAGE = 'No recurrent-layer gradients: pass probe_data to GradientTensorBoard ' +
  'to record gradients per timestep';
const NO_TIMESTEPS = 'No per-timestep gradients of this layer in this run: pass probe_data to ' +
  'GradientTensorBoard to record them.';
const NO_TIME_AXIS = 'This layer returns only its last output (return_sequences=False): no time axis. ' +
  'Its gradient per channel and sample is under "Per channel".';
const NORM_HEIGHT = 250;
const SCATTER_HEIGHT = 300;
const LOG_DECADES = 6;  // the log colour scale spans limit·1e-6 … limit

const messageOf = (error) => error?.message || String(error);

export function createRecurrentView(state) {
  const options = {
    layer: null, sample: MEAN, band: 'minmax', log: true, clamp: 99, reflect: false,
    logColor: false, gateStat: 'l2', gateLog: true, gateHeatmaps: false,
  };
  const {section, controls, body} = viewSection('recurrent', 'Recurrent layers',
    'Gradient of the probe loss with respect to each recurrent layer\'s output, per timestep ' +
    '(probe source). Read it right to left, the order backpropagation through time visits the ' +
    'timesteps: gradient that fades before the first timesteps means the layer learns only ' +
    'short-range dependencies. Masked timesteps (valid = 0) are hatched, never drawn as zero.');

  // ---- controls (in the page only while some selected run has a layer)
  const layerSelect = el('select', {attrs: {id: 'recurrent-layer', 'aria-label': 'Recurrent layer'},
    dataset: {control: 'recurrent-layer'}});
  const sampleSelect = el('select', {attrs: {id: 'recurrent-sample', 'aria-label': 'Probe sample'},
    dataset: {control: 'recurrent-sample'}});
  const slider = el('input', {attrs: {type: 'range', min: 0, max: 0, step: 1, value: 0,
    id: 'recurrent-epoch', 'aria-label': 'Epoch of the recurrent views'}, dataset: {control: 'recurrent-epoch'}});
  const epochLabel = el('span', {className: 'slider-label', dataset: {role: 'recurrent-epoch-label'}});
  const playButton = el('button', {text: '▶ Play', attrs: {type: 'button', id: 'recurrent-play', 'aria-pressed': 'false'},
    dataset: {control: 'recurrent-play'}});
  // "Step" when the runs shown were recorded per window of optimizer steps.
  const sliderCaption = el('span', {text: 'Epoch '});
  const globalControls = [
    el('div', {className: 'control-row'}, [
      el('label', {className: 'field'}, [el('span', {text: 'Layer '}), layerSelect]),
      el('label', {className: 'field'}, [el('span', {text: 'Sample '}), sampleSelect]),
    ]),
    el('div', {className: 'control-row'}, [
      el('label', {className: 'slider'}, [sliderCaption, slider, epochLabel]),
      playButton,
    ]),
  ];

  const bandSelect = el('select', {attrs: {id: 'recurrent-band', 'aria-label': 'Spread over samples'},
    dataset: {control: 'recurrent-band'}}, [
    option('minmax', 'band: min–max over samples', true),
    option('std', 'band: mean ± std'),
  ]);
  const normControls = el('div', {className: 'control-row'}, [
    bandSelect,
    checkbox('Log y axis', options.log, (value) => { options.log = value; drawAll(); }, {control: 'recurrent-log'}),
  ]);
  const clampInput = el('input', {attrs: {type: 'range', min: 50, max: 100, step: 0.5, value: options.clamp,
    id: 'recurrent-clamp', 'aria-label': 'Colour range: percentile of |g|'}, dataset: {control: 'recurrent-clamp'}});
  const clampLabel = el('span', {className: 'slider-label'});
  const nonFiniteSwatch = el('span', {className: 'swatch'});
  nonFiniteSwatch.style.background = rgbCss(NAN_COLOR);
  const reflectToggle = checkbox('Reflect backward half in time', options.reflect,
    (value) => { options.reflect = value; drawAll(); }, {control: 'recurrent-reflect'});
  const heatmapControls = el('div', {className: 'control-row'}, [
    el('label', {className: 'slider'}, [el('span', {text: 'Colour range: percentile of |g| '}), clampInput, clampLabel]),
    checkbox(`Log colour scale (${LOG_DECADES} decades)`, options.logColor,
      (value) => { options.logColor = value; drawAll(); }, {control: 'recurrent-log-color'}),
    reflectToggle,
    el('span', {className: 'legend-item'}, [el('span', {className: 'swatch swatch-hatched'}),
      el('span', {text: 'masked (valid = 0)'})]),
    el('span', {className: 'legend-item'}, [nonFiniteSwatch, el('span', {text: 'non-finite'})]),
  ]);
  const gateStatSelect = el('select', {attrs: {id: 'gate-stat', 'aria-label': 'Gate statistic'},
    dataset: {control: 'gate-stat'}}, ['l2', 'mean_abs', 'max_abs'].map((stat) => option(stat, stat, stat === options.gateStat)));
  const gateControls = el('div', {className: 'control-row'}, [
    el('label', {className: 'field'}, [el('span', {text: 'Statistic '}), gateStatSelect]),
    checkbox('Log y axis', options.gateLog, (value) => { options.gateLog = value; drawAll(); }, {control: 'gates-log'}),
    checkbox('Gate heatmaps at the epoch', options.gateHeatmaps,
      (value) => { options.gateHeatmaps = value; drawAll(); }, {control: 'gate-heatmaps'}),
  ]);

  function showClamp() {
    clampLabel.textContent = `${options.clamp}th`;
  }
  showClamp();

  layerSelect.addEventListener('change', () => { options.layer = layerSelect.value; render(); });
  sampleSelect.addEventListener('change', () => {
    options.sample = sampleSelect.value === MEAN ? MEAN : Number(sampleSelect.value);
    drawAll();
  });
  bandSelect.addEventListener('change', () => { options.band = bandSelect.value; drawAll(); });
  clampInput.addEventListener('input', () => {
    options.clamp = Number(clampInput.value);
    showClamp();
    drawAll();
  });
  gateStatSelect.addEventListener('change', () => { options.gateStat = gateStatSelect.value; drawAll(); });

  // ---- state of the current rendering
  let runs = [];            // per selected run: its layer, data and canvases
  const player = windowPlayer(slider, epochLabel, playButton, drawAll);
  let generation = 0;
  let drawing = 0;

  // ---- layout

  function block(id, title, caption, blockControls) {
    const content = el('div');
    const node = el('div', {className: 'recurrent-block', attrs: {id: `recurrent-${id}`}, dataset: {block: id}}, [
      el('h3', {text: title}),
      el('p', {className: 'caption', text: caption}),
      blockControls,
      content,
    ]);
    return {node, content};
  }

  // Why a run shows nothing in the time-axis blocks, or null.
  function timestepProblem(run) {
    if (run.error) return errorBox(run.error);
    if (!run.layer) return notice(`This run has no layer named ${options.layer}.`);
    if (run.timestepsError) return errorBox(run.timestepsError);
    if (!run.latest) return notice(NO_TIMESTEPS);
    return null;
  }

  function describeLayer(layer) {
    const kind = layer.class === layer.inner_class || !layer.inner_class ? layer.class : `${layer.class}(${layer.inner_class})`;
    if (!layer.samples) return `${kind || 'layer'}, per-gate statistics only`;
    const time = layer.has_time ? `${layer.timesteps} timesteps × ` : '';
    const pooled = [];
    if ((layer.time_block || 1) > 1) pooled.push(`time_block ${layer.time_block}`);
    if ((layer.channel_block || 1) > 1) pooled.push(`channel_block ${layer.channel_block}`);
    return `${kind}: ${time}${layer.channels} channels, ${layer.samples} probe samples` +
      (layer.bidirectional ? `, ${layer.merge_mode} of ${layer.direction_names.join(' / ')}` : '') +
      (pooled.length ? ` (pooled: ${pooled.join(', ')})` : '');
  }

  // ---- rendering

  async function render() {
    const mine = ++generation;
    player.stop();
    const selected = state.selectedRuns();
    const listings = await Promise.all(selected.map((info) => fetchTimestepLayers(info.run).then(
      (data) => ({info, layers: data.layers || []}),
      (error) => ({info, layers: [], error: messageOf(error)}))));
    if (mine !== generation) return;

    const names = [];
    for (const listing of listings) {
      for (const layer of listing.layers) if (!names.includes(layer.layer)) names.push(layer.layer);
    }
    if (!names.length) {
      runs = [];
      player.setEpochs([]);
      controls.replaceChildren();
      body.replaceChildren(...listings.filter((listing) => listing.error)
        .map((listing) => errorBox(`${listing.info.run}: ${listing.error}`)), notice(EMPTY_MESSAGE));
      return;
    }
    if (!names.includes(options.layer)) options.layer = names[0];
    layerSelect.replaceChildren(...names.map((name) => option(name, name, name === options.layer)));
    controls.replaceChildren(...globalControls);

    runs = listings.map(({info, layers, error}) => ({
      info, run: info.run, error, layer: layers.find((layer) => layer.layer === options.layer) || null,
    }));
    await Promise.all(runs.map(async (run) => {
      if (!run.layer) return;
      if (run.layer.epochs && run.layer.epochs.length) {
        try {
          run.latest = await fetchTimesteps(run.run, options.layer);
          run.byEpoch = new Map([[run.latest.epoch, run.latest]]);
        } catch (error) {
          run.timestepsError = messageOf(error);
        }
      }
      run.gateSource = gateSource(run.layer, state.source);
      if (run.gateSource) {
        try {
          run.gates = await fetchGates(run.run, run.gateSource, options.layer);
        } catch (error) {
          run.gatesError = messageOf(error);
        }
      }
    }));
    if (mine !== generation) return;

    const all = new Set();
    for (const run of runs) {
      (run.latest ? run.layer.epochs : []).forEach((epoch) => all.add(epoch));
      (run.gates ? run.gates.epochs : []).forEach((epoch) => all.add(epoch));
    }
    player.setEpochs([...all].sort((a, b) => a - b));
    const axes = new Set(runs.filter((run) => run.layer).map((run) => axisOf(run.info)));
    sliderCaption.textContent = axes.size > 1 ? 'Epoch / step ' : axes.has('step') ? 'Step ' : 'Epoch ';

    const samples = Math.max(0, ...runs.map((run) => (run.latest ? run.latest.values.length : 0)));
    if (options.sample !== MEAN && options.sample >= samples) options.sample = MEAN;
    sampleSelect.replaceChildren(option(MEAN, 'mean |g| over samples', options.sample === MEAN),
      ...Array.from({length: samples}, (_, s) => option(s, `sample ${s}`, options.sample === s)));
    sampleSelect.disabled = !samples;
    reflectToggle.hidden = !runs.some((run) => run.layer && run.layer.bidirectional);

    buildBlocks();
    await drawAll();
  }

  function buildBlocks() {
    const norm = block('norm', 'Gradient norm per timestep',
      'L2 norm over the channels of ∂loss/∂output at each timestep, mean over the probe samples ' +
      'with its spread, at the chosen epoch; below, every epoch\'s mean (dark: early, yellow: late).',
      normControls);
    const heatmap = block('heatmap', 'Channels × timesteps',
      'One sample\'s gradient (blue < 0 < red, symmetric range) or the mean |g| over the samples. ' +
      'The colour range is a percentile of |g| at the shown epoch, so a few large values do not wash ' +
      'out the rest; cells beyond it saturate. Bidirectional layers: the line separates the forward ' +
      'and backward halves.',
      heatmapControls);
    const channels = block('channels', 'Per channel',
      `A small plot per channel (the first ${MAX_GRID_CHANNELS}), gradient vs timestep, one line per ` +
      'sample, all on the same y scale (clamped like the heatmap). Layers without time axis: one dot ' +
      'per sample and channel.',
      null);
    const gates = block('gates', 'Per-gate weight gradients',
      'LSTM and GRU fuse their gates in each weight; here each gate\'s slice of the epoch gradient ' +
      'separately (LSTM: input, forget, cell, output; GRU: update, reset, candidate), per weight ' +
      '(kernel, recurrent_kernel, bias) and direction. Source: the tab\'s when the layer has it.',
      gateControls);
    // A layer without time axis in every run has neither norms per
    // timestep nor a heatmap: only its scatter and gates are shown.
    const timed = runs.some((run) => run.layer && run.layer.has_time && run.latest);
    body.replaceChildren(...(timed ? [norm.node, heatmap.node] : []), channels.node, gates.node);

    const byBlock = {
      norm: runPanels(norm.content, state, {needsSource: false}),
      heatmap: runPanels(heatmap.content, state, {needsSource: false}),
      channels: runPanels(channels.content, state, {needsSource: false}),
      gates: runPanels(gates.content, state, {needsSource: false}),
    };
    runs.forEach((run, i) => {
      const panels = {norm: byBlock.norm[i], heatmap: byBlock.heatmap[i],
        channels: byBlock.channels[i], gates: byBlock.gates[i]};
      run.width = panels.channels.width;
      run.canvases = {};
      if (run.layer) {
        panels[timed ? 'norm' : 'channels'].element.append(
          el('div', {className: 'muted layer-description', text: describeLayer(run.layer)}));
      }
      const problem = timestepProblem(run);
      if (problem) {
        for (const key of ['norm', 'heatmap', 'channels']) panels[key].element.append(problem.cloneNode(true));
      } else if (!run.layer.has_time) {
        // Shown only beside runs whose layer has a time axis.
        panels.norm.element.append(notice(NO_TIME_AXIS));
        panels.heatmap.element.append(notice(NO_TIME_AXIS));
        run.canvases.scatter = addCanvas(panels.channels.element, 'channel-scatter', run, SCATTER_HEIGHT,
          `Gradient per channel and sample of ${options.layer}`);
      } else {
        run.canvases.norm = addCanvas(panels.norm.element, 'timestep-norm', run, NORM_HEIGHT,
          `Gradient norm per timestep of ${options.layer}`);
        run.canvases.norm.dataset.chart = 'epoch';
        run.canvases.overlay = addCanvas(panels.norm.element, 'timestep-norm', run, NORM_HEIGHT,
          `Gradient norm per timestep of ${options.layer}, every epoch`);
        run.canvases.overlay.dataset.chart = 'epochs';
        run.canvases.heatmap = addCanvas(panels.heatmap.element, 'timestep-heatmap', run,
          heatmapHeight(pooledChannels(run.latest)), `Channels × timesteps gradient of ${options.layer}`);
        const count = pooledChannels(run.latest);
        if (count > MAX_GRID_CHANNELS) {
          panels.channels.element.append(el('div', {className: 'muted',
            text: `The first ${MAX_GRID_CHANNELS} of ${count} channels${run.layer.bidirectional ? ' (forward half first)' : ''}.`}));
        }
        run.canvases.grid = addCanvas(panels.channels.element, 'channel-grid', run,
          channelGridHeight(run.width, Math.min(count, MAX_GRID_CHANNELS)), `Gradient per channel of ${options.layer}`);
      }
      run.errorSlots = {heatmap: el('div'), channels: el('div'), gates: el('div')};
      panels.heatmap.element.append(run.errorSlots.heatmap);
      panels.channels.element.append(run.errorSlots.channels);

      const gatePanel = panels.gates.element;
      if (run.error) gatePanel.append(errorBox(run.error));
      else if (!run.layer) gatePanel.append(notice(`This run has no layer named ${options.layer}.`));
      else if (run.gatesError) gatePanel.append(errorBox(run.gatesError));
      else if (!run.gates) {
        gatePanel.append(notice(run.layer.recurrent_kind === null
          ? `No per-gate statistics: ${run.layer.inner_class || run.layer.class || 'this layer'} has no gates (only LSTM and GRU do).`
          : 'No per-gate statistics of this layer in this run.'));
      } else {
        gatePanel.append(el('div', {className: 'muted',
          text: `${run.gates.recurrent_kind}, ${run.gateSource} source${run.gateSource !== state.source ? ` (no ${state.source} gates)` : ''}`}));
        run.gateCharts = el('div');
        run.gateHeatmaps = el('div', {className: 'gate-heatmaps'});
        gatePanel.append(run.gateCharts, run.gateHeatmaps, run.errorSlots.gates);
      }
    });
  }

  function addCanvas(parent, view, run, height, label) {
    const canvas = createCanvas(view, run.width, height, label);
    canvas.dataset.run = run.run;
    canvas.dataset.layer = options.layer;
    parent.append(canvas);
    return canvas;
  }

  // ---- drawing at the chosen epoch

  async function loadEpoch(run, target) {
    if (!run.latest || !run.canvases) return null;
    const epoch = availableRecord(run.layer.epochs, target);
    if (!run.byEpoch.has(epoch)) run.byEpoch.set(epoch, await fetchTimesteps(run.run, options.layer, epoch));
    return run.byEpoch.get(epoch);
  }

  // The value a colour range or y range stops at: the clamp percentile of
  // the runs' values together when runs share a scale, else of each run's.
  function limitsOf(shown, valuesOf) {
    const own = new Map(shown.map((run) => [run, absPercentile(valuesOf(run), options.clamp)]));
    const shared = absPercentile(shown.flatMap((run) => valuesOf(run)), options.clamp);
    return (run) => (state.sharedY ? shared : own.get(run));
  }

  function yDomainOf(shown, extentOf, log, includeZero) {
    const own = new Map(shown.map((run) => [run, extentOf(run)]));
    const shared = niceDomain(mergeExtents([...own.values()]), log, includeZero);
    return (run) => (state.sharedY ? shared : niceDomain(own.get(run), log, includeZero));
  }

  async function drawAll() {
    const mine = ++drawing;
    const view = generation;
    const target = player.current();
    player.show(target);
    if (target === null) return;
    await Promise.all(runs.map(async (run) => {
      try {
        run.current = await loadEpoch(run, target);
        if (run.errorSlots) run.errorSlots.heatmap.replaceChildren();
      } catch (error) {
        run.current = null;
        run.errorSlots.heatmap.replaceChildren(errorBox(messageOf(error)));
      }
    }));
    if (mine !== drawing || view !== generation) return;
    const sample = options.sample;
    const timed = runs.filter((run) => run.current && run.canvases.heatmap);
    const untimed = runs.filter((run) => run.current && run.canvases.scatter);

    for (const run of timed) run.grid = timestepGrid(run.current, sample !== MEAN && sample >= run.current.values.length ? MEAN : sample);
    const normDomain = yDomainOf(timed, (run) => {
      const norms = run.latest.epoch_l2;
      return extent([...norms.min.flat(), ...norms.max.flat(), ...(run.current.l2 || []).flat()], options.log);
    }, options.log, !options.log);
    const colourLimit = limitsOf(timed, (run) => unmaskedCells(run.grid));
    const gridLimit = limitsOf(timed, (run) => sampleValues(run.current));
    const scatterDomain = yDomainOf(untimed, (run) => extent(sampleValues(run.current)), false, true);

    for (const run of timed) {
      const epoch = run.current.epoch;
      const shownSample = run.grid.signed ? sample : MEAN;
      drawNormCharts(run.canvases.norm, run.canvases.overlay, run.current, {
        run: run.run, layer: run.current, sample: shownSample, band: options.band, log: options.log,
        yDomain: normDomain(run), epoch,
      });
      drawHeatmap(run.canvases.heatmap, run.current, {
        run: run.run, layer: run.current, grid: run.grid, sample: shownSample, epoch,
        limit: colourLimit(run), clamp: options.clamp, reflect: options.reflect,
        decades: options.logColor ? LOG_DECADES : 0,
      });
      drawChannels(run.canvases.grid, run.current, {
        run: run.run, layer: run.current, sample: shownSample, epoch, limit: gridLimit(run),
      });
    }
    for (const run of untimed) {
      drawScatter(run.canvases.scatter, run.current, {
        run: run.run, layer: run.current, sample: sample !== MEAN && sample < run.current.values.length ? sample : MEAN,
        epoch: run.current.epoch, yDomain: scatterDomain(run),
      });
    }
    await drawGates(target, mine);
  }

  async function drawGates(target, mine) {
    const shown = runs.filter((run) => run.gates && run.gateCharts);
    const stat = options.gateStat;
    const domain = yDomainOf(shown, (run) => gateExtent(run.gates, stat, options.gateLog), options.gateLog, !options.gateLog);
    for (const run of shown) {
      run.gateCharts.replaceChildren();
      const draw = gateCharts(run.gateCharts, run.gates, {
        run: run.run, source: run.gateSource, layer: options.layer, stat, log: options.gateLog,
        yDomain: domain(run), width: run.width,
      });
      draw(run.gates.epochs.length ? availableRecord(run.gates.epochs, target) : null);
    }
    if (!options.gateHeatmaps) {
      for (const run of shown) run.gateHeatmaps.replaceChildren();
      return;
    }
    const loaded = await Promise.all(shown.map(async (run) => {
      const epoch = availableRecord(run.gates.epochs, target);
      try {
        const bodies = await Promise.all(run.gates.rows.map((row) =>
          fetchGateHeatmap(run.run, run.gateSource, row.variable, epoch)));
        run.errorSlots.gates.replaceChildren();
        return bodies;
      } catch (error) {
        run.errorSlots.gates.replaceChildren(errorBox(messageOf(error)));
        return null;
      }
    }));
    if (mine !== drawing) return;
    shown.forEach((run, i) => {
      run.gateHeatmaps.replaceChildren();
      if (!loaded[i]) return;
      run.gateHeatmaps.append(el('div', {className: 'muted',
        text: `mean |g| per gate at epoch ${loaded[i][0]?.epoch}, log colours: 1e-${GATE_DECADES} … 1 × the largest cell over all epochs and gates`}));
      const directions = new Set(run.gates.rows.map((row) => row.direction)).size;
      loaded[i].forEach((data, r) => {
        const row = run.gates.rows[r];
        const what = directions > 1 ? `${row.direction} ${row.role}` : row.role;
        run.gateHeatmaps.append(el('div', {className: 'heatmap-title'}, [
          el('span', {className: 'variable-name', text: row.variable}),
          el('span', {className: 'muted', text: ` ${what}, ${data.rows}×${data.cols} per gate`}),
        ]));
        drawGateHeatmaps(run.gateHeatmaps, data, {run: run.run, width: run.width});
      });
    });
  }

  return {id: 'recurrent', section, render};
}
