// What the x axis of a run is. A run records one entry per epoch (its
// `window` in ./runs is "epoch"; the steps of every route are epoch
// indices) or one per window of N optimizer steps (`window` is N; the steps
// are the global optimizer steps where the windows end). Epochs and steps
// are never drawn on one axis.

export const AXES = ['epoch', 'step'];

// 'epoch' or 'step': the name of a run's x axis (runs listed before the
// server told windows, or unknown runs, are per epoch).
export function axisOf(info) {
  return Number.isInteger(info?.window) ? 'step' : 'epoch';
}

// "epoch 3" / "step 48": one x value of a run, for tooltips and titles.
export function atText(info, value) {
  return `${axisOf(info)} ${value}`;
}

// "3 epochs" / "125 windows of 16 steps": how much a run has recorded.
export function recordsText(info) {
  const count = info.epochs;
  if (axisOf(info) === 'epoch') return `${count} epoch${count === 1 ? '' : 's'}`;
  return `${count} window${count === 1 ? '' : 's'} of ${info.window} step${info.window === 1 ? '' : 's'}`;
}

// Groups items by the x axis of their run (`infoOf(item)`), in AXES order;
// empty groups are left out.
export function byAxis(items, infoOf) {
  const groups = new Map();
  for (const axis of AXES) {
    const members = items.filter((item) => axisOf(infoOf(item)) === axis);
    if (members.length) groups.set(axis, members);
  }
  return groups;
}
