// The tab's state in the URL, so that any view can be linked and a reload
// restores it: the selected runs, the source, the variable filter, the view
// in focus, the variable (the heatmap's) and the epoch or step (the flow and
// heatmap sliders).
//
// Where: TensorBoard shows the tab in an iframe of its own page, and the
// address bar a user copies or reloads is that page's. TensorBoard keeps its
// active tab in the page's hash, `#gradients`, and keeps further
// `&key=value` components of the hash across reloads, so the tab stores its
// state there as one component, `gradients=<query string, URI-encoded>`:
//
//   http://localhost:6006/#gradients&gradients=run%3Dtanh%252Ftrain%26view%3Dheatmap%26at%3D3
//
// The iframe is served from TensorBoard's own origin, so it can read and
// replace its parent's URL. When it cannot (the tab's page opened on its
// own, or embedded across origins) the query string is the iframe's own
// hash. The state is written with history.replaceState: moving around the
// tab adds no browser history entries.

const KEY = 'gradients';

// The window whose URL holds the state: TensorBoard's page when the tab is
// in its iframe and may read it, else the tab's own.
function host() {
  try {
    if (window.parent !== window && window.parent.location.href) return window.parent;
  } catch (error) {
    // Another origin: the tab's own URL it is.
  }
  return window;
}

// The hash's components ("gradients", "gradients=...", other keys).
function components(hash) {
  return hash.replace(/^#/, '').split('&').filter(Boolean);
}

function storedQuery(target) {
  const hash = target.location.hash;
  if (target === window) return hash.replace(/^#/, '');
  const own = components(hash).find((part) => part.startsWith(`${KEY}=`));
  if (!own) return '';
  try {
    return decodeURIComponent(own.slice(KEY.length + 1));
  } catch (error) {
    return '';
  }
}

function integerOrNull(text) {
  if (text === null || !/^-?\d+$/.test(text)) return null;
  return Number(text);
}

/**
 * The state the URL holds: {runs: [names], source, filter, view, variable,
 * at, lines}; absent fields are null (runs: []).
 */
export function readUrlState() {
  const params = new URLSearchParams(storedQuery(host()));
  return {
    runs: params.getAll('run'),
    source: params.get('source'),
    filter: params.get('filter'),
    view: params.get('view'),
    variable: params.get('variable'),
    at: integerOrNull(params.get('at')),
    lines: params.get('lines'),
  };
}

// The query string of a state (fields left out when empty).
export function stateQuery(state) {
  const params = new URLSearchParams();
  for (const run of state.runs || []) params.append('run', run);
  for (const key of ['source', 'filter', 'view', 'variable', 'lines']) {
    if (state[key]) params.set(key, state[key]);
  }
  if (Number.isInteger(state.at)) params.set('at', String(state.at));
  return params.toString();
}

/** Replaces the URL's state with `state` (the fields of readUrlState). */
export function writeUrlState(state) {
  const target = host();
  const query = stateQuery(state);
  const {pathname, search} = target.location;
  let hash;
  if (target === window) {
    hash = query ? `#${query}` : '';
  } else {
    const kept = components(target.location.hash).filter((part) => !part.startsWith(`${KEY}=`));
    if (query) kept.push(`${KEY}=${encodeURIComponent(query)}`);
    hash = kept.length ? `#${kept.join('&')}` : '';
  }
  if (hash === (target.location.hash || '')) return;
  // A full path: the tab's page has a <base href> that a bare "#..."
  // would be resolved against.
  target.history.replaceState(target.history.state, '', `${pathname}${search}${hash}`);
}
