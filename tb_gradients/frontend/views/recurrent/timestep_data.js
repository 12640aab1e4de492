// Reading the ./timesteps layout (docs/API.md): the gradient of the probe
// loss with respect to a recurrent layer's output, `values[sample][timestep]
// [channel]` (or `[sample][channel]` without a time axis), timesteps
// block-averaged by `time_block`, channels by `channel_block` within each
// direction; `l2` and `valid` per sample and timestep. No drawing here.

export const MEAN = 'mean';  // the sample picker's "mean |g| over samples"

// Unpooled timesteps [first, last] of pooled timestep `index`, and the
// centre the charts put it at (so that the x axis counts real timesteps).
export function timeBlock(layer, index) {
  const size = layer.time_block || 1;
  const first = index * size;
  const last = Math.max(first, Math.min(layer.timesteps || 0, (index + 1) * size) - 1);
  return {first, last, centre: (first + last) / 2};
}

// Number of pooled timesteps of a body (0 without a time axis).
export function pooledTimesteps(data) {
  return data.has_time === false || !data.l2 ? 0 : (data.l2[0] || []).length;
}

// Number of pooled channels of a body.
export function pooledChannels(data) {
  const ranges = data.direction_ranges;
  if (ranges && ranges.length) return ranges[ranges.length - 1][1];
  const first = (data.values || [])[0] || [];
  return Array.isArray(first[0]) ? first[0].length : first.length;
}

// Direction and unpooled channels [first, last] of pooled channel `index`.
export function channelBlock(layer, index) {
  const ranges = layer.direction_ranges && layer.direction_ranges.length
    ? layer.direction_ranges : [[0, pooledChannels(layer)]];
  let direction = ranges.findIndex(([start, end]) => index >= start && index < end);
  if (direction < 0) direction = 0;
  const perDirection = (layer.channels || ranges[ranges.length - 1][1]) / ranges.length;
  const size = layer.channel_block || 1;
  const first = direction * perDirection + (index - ranges[direction][0]) * size;
  const last = Math.min((direction + 1) * perDirection, first + size) - 1;
  return {direction, name: (layer.direction_names || [])[direction] || null, first, last};
}

// Whether a pooled channel belongs to the backward half of a Bidirectional
// layer (the half that the "reflect" option reverses in time).
export function isBackward(layer, channel) {
  return channelBlock(layer, channel).name === 'backward';
}

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * The channels × timesteps grid of one sample, or the mean |g| over the
 * samples (`sample === MEAN`) of a body with a time axis.
 *
 * Returns {rows, cols, cells, masked, valid, signed}: `cells[row * cols +
 * col]` (row = pooled channel, col = pooled timestep) is the value, NaN
 * where non-finite; `masked[col]` whether the column is masked (the
 * sample's valid = 0, or for the mean no sample valid) and `valid[col]` the
 * valid fraction (the sample's, or the mean over samples).
 */
export function timestepGrid(data, sample) {
  const cols = pooledTimesteps(data);
  const rows = pooledChannels(data);
  const cells = new Float64Array(rows * cols);
  const masked = new Array(cols).fill(false);
  const valid = new Array(cols).fill(0);
  if (sample !== MEAN) {
    const slice = data.values[sample] || [];
    for (let t = 0; t < cols; t++) {
      valid[t] = data.valid[sample]?.[t] ?? 0;
      masked[t] = !(valid[t] > 0);
      for (let c = 0; c < rows; c++) {
        const value = slice[t]?.[c];
        cells[c * cols + t] = isNumber(value) ? value : NaN;
      }
    }
    return {rows, cols, cells, masked, valid, signed: true};
  }
  // Mean |g| over the samples whose timestep is not masked; a non-finite
  // value among them makes the cell non-finite rather than vanish.
  const samples = data.values.length;
  for (let t = 0; t < cols; t++) {
    const counted = [];
    let validSum = 0;
    for (let s = 0; s < samples; s++) {
      const fraction = data.valid[s]?.[t] ?? 0;
      validSum += fraction;
      if (fraction > 0) counted.push(s);
    }
    valid[t] = samples ? validSum / samples : 0;
    masked[t] = counted.length === 0;
    for (let c = 0; c < rows; c++) {
      let sum = 0;
      for (const s of counted) {
        const value = data.values[s][t]?.[c];
        sum += isNumber(value) ? Math.abs(value) : NaN;
      }
      cells[c * cols + t] = counted.length ? sum / counted.length : 0;
    }
  }
  return {rows, cols, cells, masked, valid, signed: false};
}

// The p-th percentile (0–100) of |value| over the finite values given;
// 0 when there are none. The heatmaps' colour range is ± this value.
export function absPercentile(values, percentile) {
  const magnitudes = [];
  for (const value of values) if (Number.isFinite(value)) magnitudes.push(Math.abs(value));
  if (!magnitudes.length) return 0;
  magnitudes.sort((a, b) => a - b);
  const rank = Math.min(magnitudes.length - 1, Math.max(0,
    Math.ceil((percentile / 100) * magnitudes.length) - 1));
  return magnitudes[rank];
}

// The unmasked, finite cells of a grid (what a colour range is taken of).
export function unmaskedCells(grid) {
  const values = [];
  for (let c = 0; c < grid.rows; c++) {
    for (let t = 0; t < grid.cols; t++) {
      if (!grid.masked[t]) values.push(grid.cells[c * grid.cols + t]);
    }
  }
  return values;
}

// Every sample's finite values at unmasked timesteps (or, without a time
// axis, every value): the per-channel plots' y range is taken of these.
export function sampleValues(data) {
  const values = [];
  const timed = pooledTimesteps(data) > 0;
  data.values.forEach((slice, s) => {
    if (!timed) {
      for (const value of slice) if (isNumber(value)) values.push(value);
      return;
    }
    slice.forEach((row, t) => {
      if (!((data.valid[s]?.[t] ?? 0) > 0)) return;
      for (const value of row) if (isNumber(value)) values.push(value);
    });
  });
  return values;
}

// Pooled timesteps at which no sample is valid (hatched in the norm charts).
export function maskedForAll(data) {
  const cols = pooledTimesteps(data);
  const masked = [];
  for (let t = 0; t < cols; t++) {
    if (data.valid.every((row) => !((row?.[t] ?? 0) > 0))) masked.push(t);
  }
  return masked;
}
