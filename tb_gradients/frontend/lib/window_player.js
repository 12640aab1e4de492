// The window slider and play button of the animated views (heatmaps and
// recurrent layers): which recorded window is shown, and the loop that
// plays them. A record's step is its epoch index when the run records per
// epoch, and the optimizer step where the window ends when it records per
// window of N steps (16, 32, 48, ...); the bodies call both "epochs": the
// slider moves over the recorded values whatever they are.

import {AXES} from './axis.js';
import {el} from './dom.js';

const PLAY_INTERVAL_MS = 700;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The latest of `epochs` not after `target` (runs and variables may log
// different epochs), or the first one when all come after it.
export function availableRecord(epochs, target) {
  let best = epochs[0];
  for (const epoch of epochs) if (epoch <= target) best = epoch;
  return best;
}

// Wires `slider`, its `label` and the play `button` to `draw` (async, draws
// player.current()). The slider at its right end follows the latest epoch,
// so a refresh during training moves on with it. `changed(epoch)` (optional)
// hears the user's moves of the slider (null: the latest).
export function windowPlayer(slider, label, button, draw, changed = null) {
  let epochs = [];       // the union of the shown epochs, sorted
  let chosen = null;     // null follows the latest epoch
  let playing = false;

  function current() {
    if (!epochs.length) return null;
    return chosen !== null && epochs.includes(chosen) ? chosen : epochs[epochs.length - 1];
  }

  function show(epoch) {
    slider.value = String(Math.max(0, epochs.indexOf(epoch)));
    label.textContent = epoch === null ? '–' : `${epoch} / ${epochs[epochs.length - 1]}`;
  }

  function stop() {
    playing = false;
    if (!button) return;
    button.textContent = '▶ Play';
    button.setAttribute('aria-pressed', 'false');
  }

  async function play() {
    if (epochs.length < 2) return;
    playing = true;
    button.textContent = '❚❚ Pause';
    button.setAttribute('aria-pressed', 'true');
    let index = epochs.indexOf(current());
    while (playing) {
      // Loops like the seed's GIF; each frame waits for its data so that a
      // slow server shows every epoch instead of skipping ahead.
      index = (index + 1) % epochs.length;
      chosen = epochs[index];
      show(chosen);
      await draw();
      await sleep(PLAY_INTERVAL_MS);
    }
  }

  // Shows `epoch` from the next draw on (null or the last one: follow the
  // latest); false when it is not among the epochs.
  function select(epoch) {
    if (epoch !== null && !epochs.includes(epoch)) return false;
    chosen = epoch === null || epoch === epochs[epochs.length - 1] ? null : epoch;
    return true;
  }

  function setEpochs(list) {
    epochs = list;
    slider.max = String(Math.max(0, epochs.length - 1));
    slider.disabled = epochs.length < 2;
    if (button) button.disabled = epochs.length < 2;
  }

  slider.addEventListener('input', () => {
    const index = Number(slider.value);
    chosen = index === epochs.length - 1 ? null : epochs[index];
    show(current());
    draw();
    if (changed) changed(chosen);
  });
  if (button) button.addEventListener('click', () => (playing ? stop() : play()));

  return {current, show, stop, select, setEpochs};
}

/**
 * One slider (and play button) per x axis of the shown runs: epochs of the
 * epoch runs, steps of the window runs (axis.js). Each row is shown only
 * while some run has that axis.
 *
 * names(axis) gives the row's {slider, label, play, aria} names: `slider`
 * is the slider's id and data-control, `label` the data-role of its
 * readout, `play` the play button's id and data-control (no button when
 * absent). `draw(axis)` draws the runs of that axis at
 * players.player(axis).current(). `changed(axis, epoch)` (optional) hears the
 * user's moves of a slider.
 */
export function axisPlayers(names, draw, changed = null) {
  const players = new Map();
  const rows = AXES.map((axis) => {
    const name = names(axis);
    const slider = el('input', {attrs: {type: 'range', min: 0, max: 0, step: 1, value: 0,
      id: name.slider, 'aria-label': name.aria}, dataset: {control: name.slider, axis}});
    const label = el('span', {className: 'slider-label', dataset: {role: name.label}});
    const button = name.play ? el('button', {text: '▶ Play',
      attrs: {type: 'button', id: name.play, 'aria-pressed': 'false'}, dataset: {control: name.play}}) : null;
    const caption = axis === 'step' ? 'Step ' : 'Epoch ';
    const row = el('div', {className: 'control-row', dataset: {axis}}, [
      el('label', {className: 'slider'}, [el('span', {text: caption}), slider, label]), button]);
    row.hidden = true;
    players.set(axis, {row, player: windowPlayer(slider, label, button, () => draw(axis),
      changed && ((epoch) => changed(axis, epoch)))});
    return row;
  });
  return {
    rows,
    player: (axis) => players.get(axis).player,
    // Selects `epoch` on every slider that has it (null: the latest).
    select(epoch) {
      for (const {player} of players.values()) player.select(epoch);
    },
    // `lists`: Map axis -> sorted recorded values of the shown runs.
    setEpochs(lists) {
      for (const [axis, {row, player}] of players) {
        const list = lists.get(axis) || [];
        row.hidden = !list.length;
        player.setEpochs(list);
        if (!list.length) {
          player.stop();
          player.show(null);
        }
      }
    },
  };
}
