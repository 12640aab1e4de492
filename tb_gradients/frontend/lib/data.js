// Reading the ./variable_stats layout: each variable holds, per epoch, a
// vector aligned with the response's `stats` names.

export function statIndex(data, stat) {
  const index = data.stats.indexOf(stat);
  if (index < 0) throw new Error(`The server sent no ${stat} statistic`);
  return index;
}

// One statistic of one variable over the epochs (null where missing).
export function statColumn(data, variable, stat) {
  const index = statIndex(data, stat);
  return variable.values.map((vector) => (vector ? vector[index] ?? null : null));
}

// The values of one statistic, per row, from a variable (full data) or
// from its `min` / `max` (reduced data: docs/API.md, `points`).
export function columnOf(data, stat) {
  const index = statIndex(data, stat);
  return (part) => part.values.map((vector) => (vector ? vector[index] ?? null : null));
}

// One drawable line {x, y, resolution} of a variable: `pick(part)` gives
// the per-row values of a variable or of its min / max. Full data: one
// point per epoch. Reduced data: per bucket its smallest then its largest
// value, both at the middle of the bucket's steps (a vertical stroke that
// keeps spikes).
export function variableLine(data, variable, pick) {
  if (!data.buckets) return {x: data.epochs, y: pick(variable), resolution: 'full'};
  const low = pick(variable.min);
  const high = pick(variable.max);
  const {first, last} = data.buckets;
  const x = new Array(2 * first.length);
  const y = new Array(2 * first.length);
  for (let k = 0; k < first.length; k++) {
    x[2 * k] = x[2 * k + 1] = (first[k] + last[k]) / 2;
    y[2 * k] = low[k];
    y[2 * k + 1] = high[k];
  }
  return {x, y, resolution: 'envelope'};
}

// "step 48" or, for a bucket of reduced data, "steps 40–56".
export function xText(data, axis, value) {
  if (!data.buckets) return `${axis} ${value}`;
  const {first, last} = data.buckets;
  let low = 0;
  let high = first.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if ((first[middle] + last[middle]) / 2 < value) low = middle + 1;
    else high = middle;
  }
  return first[low] === last[low] ? `${axis} ${first[low]}` : `${axis}s ${first[low]}–${last[low]}`;
}
