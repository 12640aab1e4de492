// The epoch slider and play button of the animated views (heatmaps and
// recurrent layers): which epoch is shown, and the loop that plays them.

const PLAY_INTERVAL_MS = 700;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The latest of `epochs` not after `target` (runs and variables may log
// different epochs), or the first one when all come after it.
export function availableEpoch(epochs, target) {
  let best = epochs[0];
  for (const epoch of epochs) if (epoch <= target) best = epoch;
  return best;
}

// Wires `slider`, its `label` and the play `button` to `draw` (async, draws
// player.current()). The slider at its right end follows the latest epoch,
// so a refresh during training moves on with it.
export function epochPlayer(slider, label, button, draw) {
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

  function setEpochs(list) {
    epochs = list;
    slider.max = String(Math.max(0, epochs.length - 1));
    slider.disabled = epochs.length < 2;
    button.disabled = epochs.length < 2;
  }

  slider.addEventListener('input', () => {
    const index = Number(slider.value);
    chosen = index === epochs.length - 1 ? null : epochs[index];
    show(current());
    draw();
  });
  button.addEventListener('click', () => (playing ? stop() : play()));

  return {current, show, stop, setEpochs};
}
