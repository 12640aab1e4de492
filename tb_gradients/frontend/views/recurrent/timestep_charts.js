// Canvas drawings of a recurrent layer's per-timestep gradients: the
// channels × timesteps heatmap with its colour bar, and the grid of small
// per-channel plots (the seed's show_features_2D / show_features_1D). The
// recurrent view turns ./timesteps data into the specs drawn here.

import {context, drawFrame, formatNumber, hatch, installHover} from '../../lib/charts.js';
import {NAN_COLOR, diverging, rgbCss, viridis} from '../../lib/colors.js';

const AXIS_COLOR = '#5f6368';
const TEXT_COLOR = '#202124';
const COLOR_BAR_WIDTH = 12;
const COLOR_BAR_MARGIN = 104;

// Hover target covering a rectangle; `describe(mx, my)` reads out the point.
function areaTarget(area, describe) {
  let at = null;
  return {
    hit: (mx, my) => {
      if (mx < area.left || mx > area.right || my < area.top || my > area.bottom) return Infinity;
      at = [mx, my];
      return 0;
    },
    lines: () => describe(at[0], at[1]),
  };
}

// Signed position of a value in the colour map, in [-1, 1]: value / limit,
// or on a log scale spanning `decades` below the limit (0 = linear).
function colorFraction(value, limit, decades) {
  if (!(limit > 0)) return 0;
  const ratio = Math.min(1, Math.abs(value) / limit);
  const t = decades ? Math.max(0, 1 + Math.log10(ratio) / decades) : ratio;
  return value < 0 ? -t : t;
}

function colorOf(value, limit, signed, decades) {
  if (!Number.isFinite(value)) return NAN_COLOR;
  const t = colorFraction(value, limit, decades);
  return signed ? diverging(t) : viridis(t);
}

// Colour bar ticks: [position from the bottom (0–1), label].
function colorBarTicks(limit, signed, decades) {
  const at = (t) => (decades ? limit * Math.pow(10, -decades * (1 - t)) : limit * t);
  const top = `≥ ${formatNumber(limit)}`;
  if (!signed) {
    return decades
      ? [[1, top], [0.5, formatNumber(at(0.5))], [0, `≤ ${formatNumber(at(0))}`]]
      : [[1, top], [0.5, formatNumber(at(0.5))], [0, '0']];
  }
  const ticks = [[1, top], [0.5, '0'], [0, `≤ ${formatNumber(-limit)}`]];
  if (decades) ticks.push([0.75, formatNumber(at(0.5))], [0.25, formatNumber(-at(0.5))]);
  return ticks;
}

function drawColorBar(ctx, area, limit, signed, decades) {
  const left = area.right + 14;
  const height = area.height;
  for (let y = 0; y < height; y++) {
    const t = 1 - y / Math.max(1, height - 1);
    ctx.fillStyle = rgbCss(signed ? diverging(2 * t - 1) : viridis(t));
    ctx.fillRect(left, area.top + y, COLOR_BAR_WIDTH, 1.5);
  }
  ctx.strokeStyle = AXIS_COLOR;
  ctx.lineWidth = 1;
  ctx.strokeRect(left + 0.5, area.top + 0.5, COLOR_BAR_WIDTH, height - 1);
  ctx.fillStyle = AXIS_COLOR;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  for (const [t, text] of colorBarTicks(limit, signed, decades)) {
    const y = area.top + (1 - t) * (height - 1);
    ctx.fillRect(left + COLOR_BAR_WIDTH, y, 3, 1);
    ctx.fillText(text, left + COLOR_BAR_WIDTH + 5, y);
  }
  ctx.textBaseline = 'alphabetic';
}

/**
 * Channels (rows, top to bottom) × timesteps (x axis, in unpooled
 * timesteps) heatmap.
 *
 * spec: {title, xLabel, yLabel, timesteps (unpooled count), grid (see
 *   timestep_data.timestepGrid), limit (colour range: ± limit when signed,
 *   0 … limit otherwise), decades (log colours spanning that many decades
 *   below the limit; 0: linear), span(row, col) -> [first, last] unpooled
 *   timesteps where cell (row, col) is drawn (reflection happens here),
 *   separators: [row] (a line above each), directionLabels: [{row, text}],
 *   cellAt(row, time) -> col of the cell drawn at that timestep,
 *   describe(row, col) -> [lines]}
 */
export function drawTimestepHeatmap(canvas, spec) {
  const ctx = context(canvas);
  const {grid, timesteps} = spec;
  const {area, x, y} = drawFrame(ctx, {
    title: spec.title, xLabel: spec.xLabel, yLabel: spec.yLabel,
    xDomain: [-0.5, timesteps - 0.5], yDomain: [-0.5, grid.rows - 0.5],
    yReverse: true, yInteger: true, xInteger: true, rightMargin: COLOR_BAR_MARGIN,
  }, canvas.cssWidth, canvas.cssHeight);

  const top = (row) => y(row - 0.5);
  for (let row = 0; row < grid.rows; row++) {
    const y0 = top(row);
    const height = top(row + 1) - y0;
    for (let col = 0; col < grid.cols; col++) {
      const [first, last] = spec.span(row, col);
      const x0 = x(first - 0.5);
      const x1 = x(last + 0.5);
      if (grid.masked[col]) {
        hatch(ctx, x0, y0, x1 - x0, height);
        continue;
      }
      ctx.fillStyle = rgbCss(colorOf(grid.cells[row * grid.cols + col], spec.limit, grid.signed, spec.decades));
      // A hair wider than the cell so neighbours leave no white seam.
      ctx.fillRect(x0, y0, x1 - x0 + 0.5, height + 0.5);
    }
  }

  // The two halves of a Bidirectional layer.
  ctx.strokeStyle = TEXT_COLOR;
  ctx.lineWidth = 2;
  for (const row of spec.separators || []) {
    const py = top(row);
    ctx.beginPath();
    ctx.moveTo(area.left, py);
    ctx.lineTo(area.right, py);
    ctx.stroke();
  }
  ctx.font = '500 11px Roboto, "Helvetica Neue", Arial, sans-serif';
  ctx.textBaseline = 'top';
  for (const label of spec.directionLabels || []) {
    const width = ctx.measureText(label.text).width;
    const py = top(label.row) + 2;
    ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
    ctx.fillRect(area.right - width - 8, py, width + 6, 14);
    ctx.fillStyle = TEXT_COLOR;
    ctx.fillText(label.text, area.right - width - 5, py + 1);
  }
  ctx.textBaseline = 'alphabetic';

  drawColorBar(ctx, area, spec.limit, grid.signed, spec.decades);
  // Where the cells are, in CSS pixels (tests compare the cells alone,
  // whatever the title and colour bar say).
  canvas.plotArea = {left: area.left, top: area.top, width: area.width, height: area.height};
  installHover(canvas, [areaTarget(area, (mx, my) => {
    const row = Math.min(grid.rows - 1, Math.max(0, Math.round(y.inverse(my))));
    const time = Math.min(timesteps - 1, Math.max(0, Math.round(x.inverse(mx))));
    return spec.describe(row, spec.cellAt(row, time));
  })]);
}

/**
 * One small plot per channel, gradient vs timestep, one line per sample,
 * all on the same symmetric y scale (the seed's equate_axes).
 *
 * spec: {title, channels: [{label, lines: [{color, width, points: [[t,
 *   value | null]]}]}], timesteps (unpooled count), limit (y range ±limit),
 *   masked: [[first, last]] (hatched timestep spans), describe(channel
 *   index, t, value) -> lines for the cursor at timestep t (fractional)
 *   and height value}
 */
export function drawChannelGrid(canvas, spec) {
  const ctx = context(canvas);
  const width = canvas.cssWidth;
  const gutter = 50;
  const titleHeight = spec.title ? 20 : 0;
  const count = spec.channels.length;
  const columns = gridColumns(width, count);
  const rows = Math.ceil(count / columns);
  const cellWidth = (width - gutter - 8) / columns;
  const cellHeight = (canvas.cssHeight - titleHeight - 22) / Math.max(1, rows);
  const limit = spec.limit > 0 ? spec.limit : 1;
  const timesteps = Math.max(1, spec.timesteps);

  if (spec.title) {
    ctx.font = '500 12px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.fillStyle = TEXT_COLOR;
    ctx.fillText(spec.title, gutter, 14);
    ctx.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
  }

  const plots = [];
  spec.channels.forEach((channel, index) => {
    const row = Math.floor(index / columns);
    const col = index % columns;
    const box = {
      left: gutter + col * cellWidth + 3,
      top: titleHeight + row * cellHeight + 3,
    };
    box.right = box.left + cellWidth - 6;
    box.bottom = box.top + cellHeight - 6;
    const px = (t) => box.left + ((t + 0.5) / timesteps) * (box.right - box.left);
    const py = (value) => box.top + ((limit - Math.max(-limit, Math.min(limit, value))) / (2 * limit)) * (box.bottom - box.top);
    plots.push({box, px, py, channel, index});

    for (const [first, last] of spec.masked || []) {
      hatch(ctx, px(first - 0.5), box.top, px(last + 0.5) - px(first - 0.5), box.bottom - box.top);
    }
    ctx.strokeStyle = '#dadce0';
    ctx.lineWidth = 1;
    ctx.strokeRect(box.left + 0.5, box.top + 0.5, box.right - box.left, box.bottom - box.top);
    ctx.strokeStyle = '#bdbdbd';
    ctx.beginPath();
    ctx.moveTo(box.left, Math.round(py(0)) + 0.5);
    ctx.lineTo(box.right, Math.round(py(0)) + 0.5);
    ctx.stroke();

    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, box.top, box.right - box.left, box.bottom - box.top);
    ctx.clip();
    for (const line of channel.lines) {
      ctx.strokeStyle = line.color;
      ctx.globalAlpha = line.alpha ?? 1;
      ctx.lineWidth = line.width || 1.25;
      ctx.beginPath();
      let drawing = false;
      for (const [t, value] of line.points) {
        if (typeof value !== 'number' || !Number.isFinite(value)) {
          drawing = false;
          continue;
        }
        if (drawing) ctx.lineTo(px(t), py(value));
        else ctx.moveTo(px(t), py(value));
        drawing = true;
      }
      ctx.stroke();
      // A lone point between gaps would otherwise be invisible.
      if (line.points.length === 1 && Number.isFinite(line.points[0][1])) {
        ctx.fillStyle = line.color;
        ctx.fillRect(px(line.points[0][0]) - 1.5, py(line.points[0][1]) - 1.5, 3, 3);
      }
    }
    ctx.restore();
    ctx.globalAlpha = 1;

    ctx.fillStyle = '#188038';
    ctx.font = '600 11px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.textBaseline = 'top';
    ctx.fillText(channel.label, box.left + 4, box.top + 3);
    ctx.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.textBaseline = 'alphabetic';

    // Shared scale: y ticks on the first column, x ticks under the last row
    // (and under the last plot of each column when the grid is ragged).
    ctx.fillStyle = AXIS_COLOR;
    if (col === 0) {
      ctx.textAlign = 'right';
      for (const [value, baseline] of [[limit, 'top'], [0, 'middle'], [-limit, 'bottom']]) {
        ctx.textBaseline = baseline;
        ctx.fillText(formatNumber(value), gutter - 4, py(value));
      }
    }
    if (index + columns >= count) {
      ctx.textBaseline = 'top';
      ctx.fillText('0', box.left, box.bottom + 3);
      ctx.textAlign = 'right';
      ctx.fillText(String(timesteps - 1), box.right, box.bottom + 3);
    }
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
  });

  installHover(canvas, plots.map(({box, index}) => areaTarget(box, (mx, my) => {
    const t = ((mx - box.left) / (box.right - box.left)) * timesteps - 0.5;
    // The value under the cursor, to pick the nearest sample's line.
    const value = ((box.top - my) / (box.bottom - box.top)) * 2 * limit + limit;
    return spec.describe(index, t, value);
  })));
}

// Columns of small plots for `count` channels in `width` pixels: plots
// about 120 px wide, never more columns than channels.
function gridColumns(width, count) {
  return Math.max(1, Math.min(count, Math.floor((width - 58) / 120)));
}

// Height a grid of `count` channel plots needs at `width`.
export function channelGridHeight(width, count, title = true) {
  const rows = Math.ceil(count / gridColumns(width, count));
  return (title ? 20 : 0) + rows * 76 + 22;
}
