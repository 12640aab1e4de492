// Talks to the plugin's JSON routes. Every request goes through here so that
// a failure always becomes an ApiError carrying the server's own message,
// which the views show instead of swallowing.

export class ApiError extends Error {
  constructor(message, status, route) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.route = route;
  }
}

// Responses are immutable for a given URL until the user refreshes, so one
// cache of promises serves every view (and the heatmap animation, which
// revisits the same epochs on every loop).
const cache = new Map();

export function clearCache() {
  cache.clear();
}

function urlFor(route, params) {
  // Relative to the plugin entry page's <base href="plugin/gradients/">.
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null) query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `./${route}?${text}` : `./${route}`;
}

async function errorMessage(response) {
  let body = '';
  try {
    body = await response.text();
  } catch (e) {
    // The body is only decoration for the status line.
  }
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed === 'object') {
      body = parsed.error || parsed.message || body;
    }
  } catch (e) {
    // Plain-text error (TensorBoard answers errors.PublicError this way).
  }
  body = String(body).trim();
  return body || `${response.status} ${response.statusText}`;
}

function getJson(route, params) {
  const url = urlFor(route, params);
  if (!cache.has(url)) {
    const request = fetch(url, {headers: {Accept: 'application/json'}})
      .then(async (response) => {
        if (!response.ok) {
          throw new ApiError(await errorMessage(response), response.status, route);
        }
        return response.json();
      })
      .catch((error) => {
        // Failed requests are retried on the next call rather than cached.
        cache.delete(url);
        if (error instanceof ApiError) throw error;
        throw new ApiError(`Request ${route} failed: ${error.message}`, 0, route);
      });
    cache.set(url, request);
  }
  return cache.get(url);
}

export const fetchRuns = () => getJson('runs');
export const fetchVariables = (run, source) => getJson('variables', {run, source});
// `range` (optional): {points, start, end} of docs/API.md: at most `points`
// min/max buckets of the steps from `start` to `end`.
export const fetchScalars = (run, source, range = {}) =>
  getJson('scalars', {run, source, points: range.points, start: range.start, end: range.end});
// The statistics columns the views draw (layer statistics, flow, raw
// highest elements); asking for these few instead of all nineteen halves
// the body and the server's work.
export const VARIABLE_STATS_COLUMNS = ['mean', 'std', 'mean_abs', 'max_abs', 'accumulated_max_abs', 'l2'];
export const fetchVariableStats = (run, source, range = {}, stats = VARIABLE_STATS_COLUMNS) =>
  getJson('variable_stats', {run, source, stats: stats.join(','),
    points: range.points, start: range.start, end: range.end});
// What the views draw first (layer statistics, flow; the highest-gradient
// curves come with every body): the raw highest elements add
// accumulated_max_abs when the user asks for them.
export const OVERVIEW_COLUMNS = ['mean', 'std', 'mean_abs', 'max_abs', 'l2'];
export const RAW_HIGHEST_COLUMNS = [...OVERVIEW_COLUMNS, 'accumulated_max_abs'];
// Buckets of a long run's overview charts (one request for the views that
// share it): about one per 4 pixels of a run's panel, each a min/max
// envelope, so a spike survives; a zoomed range is fetched again
// (fetchZoomedStats).
export const overviewPoints = (width) => Math.max(64, Math.round(width / 4));
export const fetchOverviewStats = (run, source, width, stats = OVERVIEW_COLUMNS) =>
  fetchVariableStats(run, source, {points: overviewPoints(width)}, stats);
// The statistics of an x range, at full resolution when the range holds at
// most as many epochs as the overview has buckets.
export const fetchZoomedStats = (run, source, [low, high], width, stats = OVERVIEW_COLUMNS) =>
  fetchVariableStats(run, source, {points: overviewPoints(width), start: Math.ceil(low), end: Math.floor(high)}, stats);
export const fetchSteps = (run, source) => getJson('steps', {run, source});
// Every variable over every window, as uint8 log codes (the gradient map).
export const fetchGradientMap = (run, source, stat) => getJson('gradient_map', {run, source, stat});
// Each run's findings, most severe first (docs/FINDINGS.md).
export const fetchFindings = (run) => getJson('findings', {run});
export const fetchHeatmap = (run, source, variable, step) =>
  getJson('heatmap', {run, source, variable, step});
// Recurrent layers (docs/API.md): per-timestep gradients exist for the probe
// source only, so those routes take no source.
export const fetchTimestepLayers = (run) => getJson('timestep_layers', {run});
export const fetchTimesteps = (run, layer, step) => getJson('timesteps', {run, layer, step});
export const fetchGates = (run, source, layer) => getJson('gates', {run, source, layer});
export const fetchGateHeatmap = (run, source, variable, step) =>
  getJson('gate_heatmap', {run, source, variable, step});
