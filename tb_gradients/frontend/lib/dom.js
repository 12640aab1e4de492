// DOM construction helpers. Run, variable and tag names come from the logdir
// and are untrusted: they only ever reach the page through textContent,
// option.value or setAttribute on non-executable attributes, never as markup.

export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = String(options.text);
  if (options.title !== undefined) node.title = String(options.title);
  for (const [name, value] of Object.entries(options.attrs || {})) {
    node.setAttribute(name, String(value));
  }
  for (const [name, value] of Object.entries(options.dataset || {})) {
    node.dataset[name] = String(value);
  }
  for (const [event, handler] of Object.entries(options.on || {})) {
    node.addEventListener(event, handler);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function option(value, label, selected = false) {
  const node = document.createElement('option');
  node.value = String(value);
  node.textContent = String(label);
  node.selected = selected;
  return node;
}

export function checkbox(labelText, checked, onChange, dataset = {}) {
  const input = el('input', {attrs: {type: 'checkbox'}, dataset});
  input.checked = checked;
  input.addEventListener('change', () => onChange(input.checked));
  return el('label', {className: 'toggle'}, [input, el('span', {text: labelText})]);
}

export function errorBox(message) {
  return el('div', {className: 'error', text: message, attrs: {role: 'alert'}});
}

export function notice(message) {
  return el('div', {className: 'notice', text: message});
}

// A floating readout shared by all canvases (one per document).
let tooltip = null;

export function showTooltip(lines, clientX, clientY) {
  if (!tooltip) {
    tooltip = el('div', {className: 'tooltip', attrs: {role: 'status'}});
    document.body.append(tooltip);
  }
  clear(tooltip);
  for (const line of lines) tooltip.append(el('div', {text: line}));
  tooltip.style.display = 'block';
  const margin = 14;
  const {innerWidth, innerHeight} = window;
  const box = tooltip.getBoundingClientRect();
  let left = clientX + margin;
  let top = clientY + margin;
  if (left + box.width > innerWidth) left = Math.max(0, clientX - margin - box.width);
  if (top + box.height > innerHeight) top = Math.max(0, clientY - margin - box.height);
  tooltip.style.left = `${left + window.scrollX}px`;
  tooltip.style.top = `${top + window.scrollY}px`;
}

export function hideTooltip() {
  if (tooltip) tooltip.style.display = 'none';
}
