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
