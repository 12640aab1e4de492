// The Findings panel at the top of the tab: per selected run, what the
// rules of docs/FINDINGS.md found (the /findings route), most severe
// first. Each finding is a button that opens its evidence: the source, the
// view, the variable and the epoch or step (`at`) of the record that shows
// it. Every string of a finding comes from the log directory or the route
// and reaches the page through textContent only.

import {fetchFindings} from '../api.js';
import {atText} from '../lib/axis.js';
import {el, errorBox, notice} from '../lib/dom.js';

const SEVERITY_LABELS = {error: 'Error', warning: 'Warning', info: 'Info'};

// "epoch 1, step 10", "step 48" or, when the route tells neither, the
// record's x value ("epoch 3" / "step 48").
export function whereText(finding, info) {
  const parts = [];
  if (finding.epoch !== null && finding.epoch !== undefined) parts.push(`epoch ${finding.epoch}`);
  if (finding.step !== null && finding.step !== undefined) parts.push(`step ${finding.step}`);
  return parts.length ? parts.join(', ') : atText(info, finding.at);
}

// "hidden_2/kernel" or "layer hidden_2" or "whole model".
function targetText(finding) {
  if (finding.variable) return finding.variable;
  if (finding.layer) return `layer ${finding.layer}`;
  return 'whole model';
}

function evidenceLines(evidence) {
  return Object.entries(evidence || {}).map(([key, value]) => `${key}: ${JSON.stringify(value)}`);
}

// What could not be read of a run (the route's `errors`): each one names
// its tag, step and reason; `more` counts the others skipped for that
// reason.
function readErrorList(errors) {
  return el('ul', {className: 'read-error-list'}, errors.map((error) => el('li', {
    className: 'read-error', dataset: {tag: error.tag ?? ''},
  }, [
    el('span', {className: 'badge severity severity-error', text: 'Unreadable'}),
    el('span', {className: 'finding-target', text: error.tag ?? 'run'}),
    error.step !== null && error.step !== undefined
      ? el('span', {className: 'finding-where muted', text: `step ${error.step}`}) : null,
    el('span', {className: 'finding-message', text: error.reason}),
    error.more ? el('span', {className: 'muted', text: `(and ${error.more} more for the same reason)`}) : null,
  ])));
}

/**
 * The panel. `open(finding, info)` opens a finding's evidence (index.js);
 * `isOpen(finding)` tells whether the tab shows it now.
 */
export function createFindingsPanel(state, {open, isOpen}) {
  const body = el('div', {className: 'findings-body'});
  const section = el('section', {className: 'view findings', attrs: {id: 'view-findings', 'aria-label': 'Findings'},
    dataset: {section: 'findings'}}, [
    el('h2', {text: 'Findings'}),
    el('p', {className: 'caption', text: 'What the rules found in each selected run\'s gradients ' +
      '(non-finite values, vanishing or exploding gradients, dead units, cancellation), most severe ' +
      'first. Click one to open the view, variable and epoch (or step) that show it. Below them, ' +
      'what could not be read of the run (damaged data, or data from a newer version).'}),
    body,
  ]);
  let generation = 0;
  let buttons = [];

  function markOpen() {
    for (const {button, finding} of buttons) {
      if (isOpen(finding)) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
  }

  function item(finding, info) {
    const severity = SEVERITY_LABELS[finding.severity] ? finding.severity : 'info';
    const button = el('button', {
      className: 'finding-link',
      attrs: {type: 'button'},
      title: `Open the ${finding.view} view at ${atText(info, finding.at)} (${finding.source} source)`,
      dataset: {
        run: info.run, kind: finding.kind, severity, view: finding.view, source: finding.source,
        at: finding.at, variable: finding.variable ?? '',
      },
      on: {click: () => open(finding, info)},
    }, [
      el('span', {className: `badge severity severity-${severity}`, text: SEVERITY_LABELS[severity]}),
      el('span', {className: 'finding-kind', text: finding.kind}),
      el('span', {className: 'finding-target', text: targetText(finding)}),
      el('span', {className: 'finding-where muted', text: whereText(finding, info)}),
      finding.source !== 'training' ? el('span', {className: 'muted', text: `(${finding.source})`}) : null,
      el('span', {className: 'finding-message', text: finding.message}),
    ]);
    buttons.push({button, finding});
    const lines = evidenceLines(finding.evidence);
    const details = lines.length ? el('details', {className: 'finding-evidence'}, [
      el('summary', {text: 'evidence'}),
      el('pre', {text: lines.join('\n')}),
    ]) : null;
    return el('li', {className: 'finding', dataset: {severity}}, [button, details]);
  }

  async function render() {
    const mine = ++generation;
    buttons = [];
    const runs = state.selectedRuns();
    section.hidden = !runs.length;
    const blocks = runs.map((info) => {
      const content = el('div', {className: 'findings-content'}, [el('span', {className: 'muted', text: 'Loading…'})]);
      const summary = el('span', {className: 'muted findings-count'});
      return {info, content, summary, block: el('div', {className: 'findings-run', dataset: {run: info.run}}, [
        el('div', {className: 'panel-header'}, [el('span', {className: 'run-name', text: info.run}), summary]),
        content,
      ])};
    });
    body.replaceChildren(...blocks.map((block) => block.block));
    // One request per run and refresh (api.js caches until a refresh).
    await Promise.all(blocks.map(async ({info, content, summary}) => {
      let data;
      try {
        data = await fetchFindings(info.run);
      } catch (error) {
        if (mine === generation) content.replaceChildren(errorBox(`Findings: ${error.message || error}`));
        return;
      }
      if (mine !== generation) return;
      // The route sorts them; kept in its order within a severity.
      const rank = (finding) => Object.keys(SEVERITY_LABELS).indexOf(finding.severity);
      const found = (Array.isArray(data.findings) ? data.findings : [])
        .map((finding, index) => [finding, index])
        .sort(([a, i], [b, j]) => rank(a) - rank(b) || i - j)
        .map(([finding]) => finding);
      const unread = Array.isArray(data.errors) ? data.errors : [];
      summary.textContent = [
        found.length ? `${found.length} finding${found.length === 1 ? '' : 's'}` : '',
        unread.length ? `${unread.length} read error${unread.length === 1 ? '' : 's'}` : '',
      ].filter(Boolean).map((text) => ` ${text}`).join(',');
      content.replaceChildren(...[
        found.length ? el('ol', {className: 'finding-list'}, found.map((finding) => item(finding, info))) : null,
        unread.length ? readErrorList(unread) : null,
        found.length ? null : notice(unread.length ? 'No findings in what could be read' : 'No findings'),
      ].filter(Boolean));
    }));
    if (mine === generation) markOpen();
  }

  return {id: 'findings', section, render, markOpen};
}
