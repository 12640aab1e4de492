// What the recurrent view draws for one run at one epoch: the gradient norm
// per timestep (the epoch's, and every epoch's overlaid), the channels ×
// timesteps heatmap, the per-channel plots and, for a layer without time
// axis, the per-channel scatter. Each function turns a ./timesteps body and
// the view's options into a chart spec; the view decides scales and layout.

import {drawLineChart, drawMessage, formatNumber} from '../../lib/charts.js';
import {epochRampColor, paletteColor} from '../../lib/colors.js';
import {drawChannelGrid, drawTimestepHeatmap} from './timestep_charts.js';
import {MEAN, channelBlock, isBackward, maskedForAll, pooledChannels, pooledTimesteps, timeBlock,
  timestepGrid} from './timestep_data.js';

// Dark indigo, outside the palette: the samples' colours (C0, C1, ...)
// stay free for their own lines.
const NORM_COLOR = '#283593';
const SAMPLE_FADED = '#c8c8c8';
export const MAX_GRID_CHANNELS = 32;

// Sample s keeps colour C<s mod 10> in the plots and the scatter.
const sampleColor = (sample) => paletteColor(sample);

function timestepText(layer, col) {
  const {first, last} = timeBlock(layer, col);
  return first === last ? `timestep ${first}` : `timesteps ${first}–${last} (block ${col}, time_block ${layer.time_block})`;
}

function channelText(layer, row) {
  const {first, last, name} = channelBlock(layer, row);
  const direction = layer.bidirectional && name ? `, ${name}` : '';
  return first === last
    ? `channel ${first}${direction}`
    : `channels ${first}–${last}${direction} (block ${row}, channel_block ${layer.channel_block})`;
}

function sampleText(sample, data) {
  return sample === MEAN ? `mean |g| over ${data.values.length} samples` : `sample ${sample}`;
}

// Hatched spans [first, last] (unpooled) of the given pooled timesteps.
function maskedSpans(layer, columns) {
  return columns.map((col) => {
    const {first, last} = timeBlock(layer, col);
    return [first, last];
  });
}

// ---------------------------------------------------------------- norms

// Low / high edge of the spread band at pooled timestep t of an epoch.
function bandEdges(norms, index, t, band, log) {
  const mean = norms.mean[index]?.[t];
  if (band === 'std') {
    const std = norms.std[index]?.[t];
    if (typeof mean !== 'number' || typeof std !== 'number') return [null, null];
    let low = mean - std;
    // A log axis cannot show mean − std ≤ 0: the band stops at the minimum.
    if (log && !(low > 0)) low = norms.min[index]?.[t] ?? null;
    return [low, mean + std];
  }
  return [norms.min[index]?.[t] ?? null, norms.max[index]?.[t] ?? null];
}

/**
 * Norm over channels per timestep at `epoch` (mean over samples with a
 * min–max or ± std band, and the chosen sample's own norm), and every
 * epoch's mean overlaid, early → late.
 *
 * options: {run, layer, sample, band, log, yDomain, epoch}
 */
export function drawNormCharts(epochCanvas, overlayCanvas, data, options) {
  const {layer, sample, band, log, yDomain, epoch, run} = options;
  const norms = data.epoch_l2;
  const columns = pooledTimesteps(data);
  const xDomain = [-0.5, Math.max(0.5, layer.timesteps - 0.5)];
  const hatches = maskedSpans(layer, maskedForAll(data)).map(([first, last]) => ({x0: first - 0.5, x1: last + 0.5}));
  const centre = (t) => timeBlock(layer, t).centre;
  const at = (values, t) => values?.[t] ?? null;
  const index = norms.epochs.indexOf(epoch);
  const hatchLegend = hatches.length ? [{label: 'masked (no valid sample)', kind: 'hatch', color: '#9e9e9e'}] : [];
  const describe = (label, values, t) => [run, `epoch ${epoch}, ${timestepText(layer, t)}`,
    `${label}: ${formatNumber(at(values, t))}`,
    `min ${formatNumber(at(norms.min[index], t))}, max ${formatNumber(at(norms.max[index], t))}, std ${formatNumber(at(norms.std[index], t))}`];
  const byColumn = (values) => Array.from({length: columns}, (_, t) => [centre(t), at(values, t)]);

  const series = [];
  const legend = [
    {label: 'mean over samples', color: NORM_COLOR},
    {label: band === 'std' ? '± std' : 'min–max', color: NORM_COLOR, kind: 'band'},
  ];
  if (sample !== MEAN && data.l2[sample]) {
    // The sample's own norms, with gaps where it is masked.
    const own = data.l2[sample].map((value, t) => ((data.valid[sample]?.[t] ?? 0) > 0 ? value : null));
    series.push({
      label: `sample ${sample}`, color: sampleColor(sample), dash: [5, 3], width: 1.5,
      points: byColumn(own), describe: (x, y) => [run, `sample ${sample}, epoch ${epoch}`,
        timestepText(layer, columnOf(layer, x)), `l2: ${formatNumber(y)}`],
    });
    legend.push({label: `sample ${sample}`, color: sampleColor(sample), dash: [5, 3]});
  }
  if (index >= 0) {
    series.unshift({
      label: 'mean', color: NORM_COLOR, width: 2, marker: columns <= 60 ? 'dot' : null,
      points: byColumn(norms.mean[index]),
      describe: (x) => describe('mean l2', norms.mean[index], columnOf(layer, x)),
    });
  }
  drawLineChart(epochCanvas, {
    title: `epoch ${epoch}: L2 norm over channels per timestep`,
    xLabel: 'timestep', yLabel: '‖∂loss/∂output‖₂', xDomain, yDomain, yLog: log, xInteger: true,
    hatches, legend: [...legend, ...hatchLegend],
    bands: index >= 0 ? [{
      color: NORM_COLOR,
      points: Array.from({length: columns}, (_, t) => [centre(t), ...bandEdges(norms, index, t, band, log)]),
    }] : [],
    series,
  });

  // Every epoch's mean; the shown epoch drawn last, thicker.
  const count = norms.epochs.length;
  const order = norms.epochs.map((_, i) => i).filter((i) => i !== index);
  if (index >= 0) order.push(index);
  // Legend: a few epochs spread over the ramp, and the shown one.
  const spread = Array.from({length: Math.min(count, 4)}, (_, k) => Math.round((k * (count - 1)) / Math.max(1, Math.min(count, 4) - 1)));
  const picks = [...new Set([...spread, index])].filter((i) => i >= 0).sort((a, b) => a - b);
  drawLineChart(overlayCanvas, {
    title: `every epoch (${norms.epochs[0]}–${norms.epochs[count - 1]}): mean over samples`,
    xLabel: 'timestep', yLabel: '‖∂loss/∂output‖₂', xDomain, yDomain, yLog: log, xInteger: true,
    hatches,
    legend: [
      ...picks.map((i) => ({label: `epoch ${norms.epochs[i]}${i === index ? ' (shown)' : ''}`,
        color: epochRampColor(i, count), width: i === index ? 3 : 2})),
      ...hatchLegend,
    ],
    series: order.map((i) => ({
      label: `epoch ${norms.epochs[i]}`, color: epochRampColor(i, count), width: i === index ? 3 : 1.25,
      points: byColumn(norms.mean[i]),
      describe: (x, y) => [run, `epoch ${norms.epochs[i]}, ${timestepText(layer, columnOf(layer, x))}`,
        `mean l2: ${formatNumber(y)}`],
    })),
  });
}

// Pooled timestep whose centre is at x (unpooled timesteps).
function columnOf(layer, x) {
  return Math.max(0, Math.floor((x + 0.5) / (layer.time_block || 1)));
}

// ---------------------------------------------------------------- heatmap

// Where the cells of one row are drawn: Keras aligns the backward half of
// a Bidirectional layer with forward time; reflected, it is shown in the
// order it was processed (the seed's reflect_half).
function reflection(layer, reflect) {
  const last = layer.timesteps - 1;
  const size = layer.time_block || 1;
  const columns = Math.ceil(layer.timesteps / size);
  const reflected = (row) => reflect && layer.bidirectional && isBackward(layer, row);
  return {
    span(row, col) {
      const {first, last: end} = timeBlock(layer, col);
      return reflected(row) ? [last - end, last - first] : [first, end];
    },
    cellAt(row, time) {
      const actual = reflected(row) ? last - time : time;
      return Math.min(columns - 1, Math.max(0, Math.floor(actual / size)));
    },
    reflected,
  };
}

/**
 * The channels × timesteps heatmap of one sample (diverging colours,
 * ± limit) or of the mean |g| over samples (sequential, 0 … limit).
 *
 * options: {run, layer, grid (timestep_data.timestepGrid), sample, epoch,
 *   limit, clamp (percentile), reflect, decades (log colours; 0: linear)}
 */
export function drawHeatmap(canvas, data, options) {
  const {run, layer, grid, sample, epoch, limit, clamp, reflect, decades} = options;
  const ranges = layer.direction_ranges || [];
  const mapping = reflection(layer, reflect);
  const names = layer.direction_names || [];
  canvas.dataset.epoch = String(epoch);
  drawTimestepHeatmap(canvas, {
    title: `${sampleText(sample, data)}, epoch ${epoch}, clamp: p${formatNumber(clamp)} of |g|`,
    xLabel: reflect && layer.bidirectional ? 'timestep (backward half reflected: processing order)' : 'timestep',
    yLabel: (layer.channel_block || 1) > 1 ? `channel block (${layer.channel_block} channels)` : 'channel',
    timesteps: layer.timesteps, grid, limit, decades,
    span: mapping.span, cellAt: mapping.cellAt,
    separators: layer.bidirectional ? ranges.slice(1).map(([start]) => start) : [],
    directionLabels: layer.bidirectional ? ranges.map(([start], i) => ({
      row: start, text: `${names[i] || `direction ${i}`}${mapping.reflected(start) ? ' (reflected)' : ''}`,
    })) : [],
    describe(row, col) {
      const value = grid.cells[row * grid.cols + col];
      const lines = [run, `${sampleText(sample, data)}, epoch ${epoch}`, timestepText(layer, col), channelText(layer, row)];
      if (grid.masked[col]) lines.push(sample === MEAN ? 'masked in every sample (valid = 0)' : 'masked (valid = 0)');
      else lines.push(`${sample === MEAN ? 'mean |g|' : 'gradient'}: ${Number.isFinite(value) ? formatNumber(value) : 'non-finite'}`);
      if (grid.valid[col] > 0 && grid.valid[col] < 1) lines.push(`valid fraction: ${formatNumber(grid.valid[col])}`);
      if (mapping.reflected(row)) lines.push('backward half, reflected in time');
      lines.push(`colour range: ${grid.signed ? '±' : '0 – '}${formatNumber(limit)}${decades ? ` (log, ${decades} decades)` : ''}`);
      return lines;
    },
  });
}

// Height of the heatmap canvas for `rows` channels.
export function heatmapHeight(rows) {
  const cell = Math.max(5, Math.min(16, 220 / Math.max(1, rows)));
  return Math.round(rows * cell) + 78;
}

// ---------------------------------------------------------------- per channel

/**
 * One small plot per channel (the first MAX_GRID_CHANNELS), one line per
 * sample, gaps where a sample is masked; the chosen sample on top.
 *
 * options: {run, layer, sample, epoch, limit}
 */
export function drawChannels(canvas, data, options) {
  const {run, layer, sample, epoch, limit} = options;
  const columns = pooledTimesteps(data);
  const count = Math.min(MAX_GRID_CHANNELS, pooledChannels(data));
  const samples = data.values.length;
  const centre = (t) => timeBlock(layer, t).centre;
  const valueAt = (s, t, c) => ((data.valid[s]?.[t] ?? 0) > 0 ? data.values[s]?.[t]?.[c] ?? null : null);
  const order = Array.from({length: samples}, (_, s) => s).filter((s) => s !== sample);
  if (sample !== MEAN && sample < samples) order.push(sample);
  const channels = Array.from({length: count}, (_, c) => ({
    label: channelLabel(layer, c),
    lines: order.map((s) => ({
      color: sampleColor(s),
      alpha: sample === MEAN || s === sample ? 0.9 : 0.22,
      width: s === sample ? 2.2 : 1.2,
      points: Array.from({length: columns}, (_, t) => [centre(t), valueAt(s, t, c)]),
    })),
  }));
  drawChannelGrid(canvas, {
    title: `epoch ${epoch}: one line per sample` + (sample === MEAN ? '' : `, sample ${sample} on top`),
    channels, timesteps: layer.timesteps, limit,
    masked: maskedSpans(layer, maskedForAll(data)),
    describe(index, time, height) {
      const t = Math.min(columns - 1, columnOf(layer, time));
      // The sample whose line passes closest to the cursor.
      let best = null;
      for (let s = 0; s < samples; s++) {
        const value = valueAt(s, t, index);
        if (typeof value !== 'number') continue;
        if (!best || Math.abs(value - height) < Math.abs(best.value - height)) best = {s, value};
      }
      const lines = [run, `epoch ${epoch}, ${timestepText(layer, t)}`, channelText(layer, index)];
      lines.push(best ? `sample ${best.s}: ${formatNumber(best.value)}` : 'masked (valid = 0) in every sample');
      return lines;
    },
  });
}

function channelLabel(layer, c) {
  const {first, last, name} = channelBlock(layer, c);
  const range = first === last ? `${first}` : `${first}–${last}`;
  return layer.bidirectional && name ? `${name[0]} ${range}` : range;
}

/**
 * A layer without time axis (return_sequences=False): the gradient of each
 * channel for each sample, one jittered dot per sample (the seed's
 * show_features_0D).
 *
 * options: {run, layer, sample, epoch, yDomain}
 */
export function drawScatter(canvas, data, options) {
  const {run, layer, sample, epoch, yDomain} = options;
  const channels = pooledChannels(data);
  const samples = data.values.length;
  if (!samples || !channels) {
    drawMessage(canvas, 'No probe samples');
    return;
  }
  const jitter = (s) => (samples > 1 ? (s / (samples - 1) - 0.5) * 0.5 : 0);
  const order = Array.from({length: samples}, (_, s) => s).filter((s) => s !== sample);
  if (sample !== MEAN && sample < samples) order.push(sample);
  const ranges = layer.direction_ranges || [];
  drawLineChart(canvas, {
    title: `epoch ${epoch}: one dot per sample and channel`,
    xLabel: (layer.channel_block || 1) > 1 ? `channel block (${layer.channel_block} channels)` : 'channel',
    yLabel: '∂loss/∂output', xInteger: true,
    xDomain: [-0.5, channels - 0.5], yDomain,
    hlines: [{y: 0, color: '#5f6368'}],
    vlines: layer.bidirectional ? ranges.slice(1).map(([start]) => ({x: start - 0.5, color: '#202124', dash: []})) : [],
    legend: sample === MEAN
      ? [{label: `colour = sample (${samples})`, color: sampleColor(0), kind: 'dot'}]
      : [{label: `sample ${sample}`, color: sampleColor(sample), kind: 'dot'},
        {label: 'other samples', color: SAMPLE_FADED, kind: 'dot'}],
    series: order.map((s) => ({
      label: `sample ${s}`, scatter: true,
      color: sample === MEAN || s === sample ? sampleColor(s) : SAMPLE_FADED,
      radius: s === sample ? 3.5 : 2.5,
      points: Array.from({length: channels}, (_, c) => [c + jitter(s), data.values[s]?.[c] ?? null]),
      describe: (x, y) => [run, `sample ${s}, epoch ${epoch}`, channelText(layer, Math.round(x)), `gradient: ${formatNumber(y)}`],
    })),
  });
}
