// Colours: one per variable (matplotlib's C0..C9 like the seed's figures),
// one per run, and the heatmap colour map with its NaN / Inf markers.

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

export function paletteColor(index) {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

// The dash of the index-th line of a chart with more lines than colours:
// solid for the first cycle of the palette, then dotted, then dash-dotted,
// so that no two of 30 lines look alike.
export function paletteDash(index) {
  const cycle = Math.floor(Math.max(0, index) / PALETTE.length);
  return [null, [2, 3], [8, 3, 2, 3]][cycle % 3];
}

// Statistic colours, stable across views so a legend is learned once.
export const STAT_COLORS = {
  norm: '#1f77b4',
  norm_accumulated: '#ff7f0e',
  accumulated_norm: '#2ca02c',
  dissolving: '#9e9e9e',
  mean: '#1f77b4',
  std: '#ff7f0e',
  max_abs: '#d62728',
  mean_abs: '#1f77b4',
  l2: '#2ca02c',
};

// Heatmap cells the colour map can never produce.
export const NAN_COLOR = [255, 0, 255];     // magenta
export const INF_COLOR = [255, 0, 0];       // red
export const MISSING_COLOR = [200, 200, 200];

// Polynomial fit of matplotlib's viridis (the seed's imshow default);
// t in [0, 1] → [r, g, b] bytes.
const VIRIDIS = [
  [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
  [0.1050930431085774, 1.404613529898575, 1.384590162594685],
  [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
  [-4.634230498983486, -5.799100973351585, -19.33244095627987],
  [6.228269936347081, 14.17993336680509, 56.69055260068105],
  [4.776384997670288, -13.74514537774601, -65.35303263337234],
  [-5.435455855934631, 4.645852612178535, 26.3124352495832],
];

function viridisExact(t) {
  const rgb = [0, 0, 0];
  for (let c = 0; c < 3; c++) {
    let value = 0;
    for (let k = VIRIDIS.length - 1; k >= 0; k--) value = value * t + VIRIDIS[k][c];
    rgb[c] = Math.round(255 * Math.min(1, Math.max(0, value)));
  }
  return rgb;
}

const LUT = Array.from({length: 256}, (_, i) => viridisExact(i / 255));

export function viridis(t) {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  return LUT[Math.round(clamped * 255)];
}

export function rgbCss(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

// Diverging map for signed gradients (the seed's 'bwr' heatmaps, with
// ColorBrewer's RdBu stops): t in [-1, 1], blue < 0 < red, near-white at 0.
const DIVERGING_STOPS = [
  [-1, [33, 102, 172]],
  [-0.5, [103, 169, 207]],
  [-0.2, [209, 229, 240]],
  [0, [247, 247, 247]],
  [0.2, [253, 219, 199]],
  [0.5, [239, 138, 98]],
  [1, [178, 24, 43]],
];

export function diverging(t) {
  const v = Math.min(1, Math.max(-1, Number.isFinite(t) ? t : 0));
  for (let i = 1; i < DIVERGING_STOPS.length; i++) {
    const [t1, c1] = DIVERGING_STOPS[i];
    if (v > t1) continue;
    const [t0, c0] = DIVERGING_STOPS[i - 1];
    const f = (v - t0) / (t1 - t0);
    return c0.map((channel, k) => Math.round(channel + f * (c1[k] - channel)));
  }
  return DIVERGING_STOPS[DIVERGING_STOPS.length - 1][1];
}

// Colour of the i-th of `count` epochs, early → late (dark purple → green
// → yellow; the palest end of viridis is left out, it vanishes on white).
export function epochRampColor(index, count) {
  const t = count > 1 ? index / (count - 1) : 1;
  return rgbCss(viridis(0.85 * t));
}

// Timesteps recorded as masked (valid = 0): grey hatching, never a colour
// of the map, so that they are not read as a zero gradient.
export const MASKED_COLOR = '#e0e0e0';
export const HATCH_COLOR = '#9e9e9e';
