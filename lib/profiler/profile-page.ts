import { fileURLToPath } from 'node:url';
import {
  type CallFrame,
  type FunctionRow,
  type MergedNode,
  type MergedProfile,
  functionTable,
  nodeTotals,
} from './profile-merge.js';

export const SORT_KEYS = ['self', 'selfPct', 'total', 'totalPct', 'name', 'file', 'line'] as const;
export type SortKey = (typeof SORT_KEYS)[number];

export interface ProfilePageView {
  /** URL path of the page: mount prefix plus the profiler's path. */
  base: string;
  merged: MergedProfile;
  requests: number;
  profilingNow: boolean;
  samplingInterval: number;
  discardFirstRequest: boolean;
  /** Why the CPU profiler could not run, if it could not. */
  failure?: string;
  sort: SortKey;
  descending: boolean;
  /** CSP nonce of the inline script. */
  nonce: string;
}

interface Column {
  key: SortKey;
  title: string;
  numeric: boolean;
  value(row: FunctionRow, sampled: number): number | string;
  show(row: FunctionRow, sampled: number): string;
}

/** Frames narrower than this share of the whole are left out of the flame graph. */
const MIN_FRAME_WIDTH = 0.001;
const ROW_HEIGHT = 18;

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const ms = (micros: number) => `${(micros / 1000).toFixed(micros < 10_000 ? 2 : 1)} ms`;
const percent = (part: number, whole: number) => `${whole > 0 ? ((part / whole) * 100).toFixed(1) : '0.0'}%`;

export const functionName = (frame: CallFrame) => frame.functionName || '(anonymous)';

/** `file://` URLs as paths; `node:` and other URLs as they are. */
export function fileOf(frame: CallFrame): string {
  if (!frame.url.startsWith('file:')) return frame.url;
  try {
    return fileURLToPath(frame.url);
  } catch {
    return frame.url;
  }
}

const lineOf = (frame: CallFrame) => (frame.lineNumber >= 0 ? frame.lineNumber + 1 : -1);

const COLUMNS: Column[] = [
  { key: 'self', title: 'Self time', numeric: true, value: (r) => r.selfTime, show: (r) => ms(r.selfTime) },
  { key: 'selfPct', title: 'Self %', numeric: true, value: (r) => r.selfTime, show: (r, s) => percent(r.selfTime, s) },
  { key: 'total', title: 'Total time', numeric: true, value: (r) => r.totalTime, show: (r) => ms(r.totalTime) },
  { key: 'totalPct', title: 'Total %', numeric: true, value: (r) => r.totalTime, show: (r, s) => percent(r.totalTime, s) },
  { key: 'name', title: 'Function', numeric: false, value: (r) => functionName(r.callFrame), show: (r) => functionName(r.callFrame) },
  { key: 'file', title: 'File', numeric: false, value: (r) => fileOf(r.callFrame), show: (r) => fileOf(r.callFrame) },
  { key: 'line', title: 'Line', numeric: true, value: (r) => lineOf(r.callFrame), show: (r) => (lineOf(r.callFrame) > 0 ? String(lineOf(r.callFrame)) : '') },
];

export const defaultDescending = (key: SortKey) => COLUMNS.find((c) => c.key === key)!.numeric;

function sortRows(rows: FunctionRow[], key: SortKey, descending: boolean, sampled: number): FunctionRow[] {
  const column = COLUMNS.find((c) => c.key === key)!;
  const sign = descending ? -1 : 1;
  return rows.sort((a, b) => {
    const x = column.value(a, sampled);
    const y = column.value(b, sampled);
    const order = typeof x === 'number' ? x - (y as number) : x.localeCompare(y as string);
    return sign * order || b.selfTime - a.selfTime;
  });
}

function table(view: ProfilePageView): string {
  const sampled = view.merged.sampledTime;
  const rows = sortRows(functionTable(view.merged), view.sort, view.descending, sampled);
  const head = COLUMNS.map((c) => {
    const current = c.key === view.sort;
    const nextDescending = current ? !view.descending : c.numeric;
    const href = `?sort=${c.key}&order=${nextDescending ? 'desc' : 'asc'}`;
    const ariaSort = current ? ` aria-sort="${view.descending ? 'descending' : 'ascending'}"` : '';
    return `<th data-key="${c.key}" data-type="${c.numeric ? 'number' : 'string'}"${ariaSort}><a href="${escapeHtml(href)}">${escapeHtml(c.title)}</a></th>`;
  }).join('');
  const body = rows
    .map((row) => {
      const cells = COLUMNS.map((c) => {
        const value = c.value(row, sampled);
        const title = c.key === 'file' ? ` title="${escapeHtml(row.callFrame.url)}"` : '';
        return `<td data-value="${escapeHtml(String(value))}"${title}>${escapeHtml(c.show(row, sampled))}</td>`;
      }).join('');
      return `<tr>${cells}</tr>`;
    })
    .join('\n');
  return `<table id="functions"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** Hue family by origin: application code warm, dependencies yellow, Node internals blue. */
function colour(frame: CallFrame): string {
  if (frame.functionName.startsWith('(') && frame.url === '') return 'hsl(0,0%,78%)';
  let hash = 0;
  for (const c of frame.functionName) hash = (hash * 31 + c.charCodeAt(0)) | 0;
  const jitter = Math.abs(hash) % 20;
  if (frame.url.startsWith('node:') || frame.url === '') return `hsl(${200 + jitter},55%,${72 + (jitter % 8)}%)`;
  if (frame.url.includes('/node_modules/')) return `hsl(${45 + jitter},80%,${62 + (jitter % 8)}%)`;
  return `hsl(${jitter},75%,${62 + (jitter % 8)}%)`;
}

function frameTitle(node: MergedNode, total: number, whole: number, root: boolean): string {
  if (root) return `all: ${ms(total)}`;
  const frame = node.callFrame;
  const line = lineOf(frame);
  const where = frame.url ? `\n${fileOf(frame)}${line > 0 ? `:${line}` : ''}` : '';
  return `${functionName(frame)}: ${ms(total)} (${percent(total, whole)}), self ${ms(node.selfTime)}${where}`;
}

/** Icicle layout: the root on top, children left to right, heaviest first, width = total time. */
function flameGraph(merged: MergedProfile): string {
  const totals = nodeTotals(merged.root);
  const whole = totals.get(merged.root) ?? 0;
  if (whole <= 0) return '<p class="empty">No samples yet.</p>';
  const frames: string[] = [];
  let maxDepth = 0;
  const stack = [{ node: merged.root, depth: 0, x: 0 }];
  while (stack.length > 0) {
    const { node, depth, x } = stack.pop()!;
    const total = totals.get(node)!;
    const w = total / whole;
    const root = depth === 0;
    maxDepth = Math.max(maxDepth, depth);
    const label = root ? 'all' : functionName(node.callFrame);
    frames.push(
      `<div class="f" data-x="${x}" data-w="${w}" data-d="${depth}" style="left:${x * 100}%;width:${w * 100}%;top:${depth * ROW_HEIGHT}px;background:${root ? 'hsl(0,0%,85%)' : colour(node.callFrame)}" title="${escapeHtml(frameTitle(node, total, whole, root))}">${escapeHtml(label)}</div>`,
    );
    const children = [...node.children.values()]
      .map((child) => ({ child, total: totals.get(child)! }))
      .sort((a, b) => b.total - a.total);
    let offset = x;
    const placed = children.map(({ child, total: childTotal }) => {
      const at = offset;
      offset += childTotal / whole;
      return { node: child, depth: depth + 1, x: at, w: childTotal / whole };
    });
    for (let i = placed.length - 1; i >= 0; i--) if (placed[i].w >= MIN_FRAME_WIDTH) stack.push(placed[i]);
  }
  return `<div id="flame" style="height:${(maxDepth + 1) * ROW_HEIGHT}px">${frames.join('')}</div>`;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.5em 0 .5em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}dt{color:#666}dd{margin:0}
.actions{display:flex;gap:1em;align-items:center;margin:1em 0}.actions form{margin:0}
.failure{color:#a00}.empty{color:#666}
#flame{position:relative;overflow:hidden;border:1px solid #ccc;font-size:12px}
.f{position:absolute;height:${ROW_HEIGHT - 1}px;line-height:${ROW_HEIGHT - 1}px;box-sizing:border-box;border-right:1px solid #fff;padding:0 3px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;cursor:pointer}
.f:hover{outline:1px solid #000;z-index:1}
#hover{min-height:1.4em;white-space:pre;font-family:ui-monospace,monospace;font-size:12px;color:#333}
table{border-collapse:collapse;font-size:13px}th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
th a{color:inherit}th[aria-sort=descending] a::after{content:" \\25BC"}th[aria-sort=ascending] a::after{content:" \\25B2"}
td:nth-child(-n+4),td:nth-child(7){text-align:right;font-variant-numeric:tabular-nums}
td:nth-child(6){font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
`;

const SCRIPT = `
(() => {
  const table = document.getElementById('functions');
  if (table) {
    const heads = [...table.tHead.rows[0].cells];
    for (const [index, th] of heads.entries()) {
      th.querySelector('a').addEventListener('click', (event) => {
        event.preventDefault();
        const numeric = th.dataset.type === 'number';
        const descending = th.getAttribute('aria-sort') ? th.getAttribute('aria-sort') === 'ascending' : numeric;
        const value = (row) => row.cells[index].dataset.value;
        const rows = [...table.tBodies[0].rows].sort((a, b) => {
          const order = numeric ? Number(value(a)) - Number(value(b)) : value(a).localeCompare(value(b));
          return descending ? -order : order;
        });
        table.tBodies[0].append(...rows);
        for (const other of heads) other.removeAttribute('aria-sort');
        th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
        history.replaceState(null, '', '?sort=' + th.dataset.key + '&order=' + (descending ? 'desc' : 'asc'));
      });
    }
  }
  const flame = document.getElementById('flame');
  if (!flame) return;
  const hover = document.getElementById('hover');
  const frames = [...flame.querySelectorAll('.f')];
  const num = (el, key) => Number(el.dataset[key]);
  flame.addEventListener('mouseover', (event) => {
    if (event.target.classList.contains('f')) hover.textContent = event.target.title;
  });
  flame.addEventListener('click', (event) => {
    const target = event.target;
    if (!target.classList.contains('f')) return;
    const zx = num(target, 'x'), zw = num(target, 'w'), zd = num(target, 'd'), eps = 1e-9;
    for (const f of frames) {
      const x = num(f, 'x'), w = num(f, 'w'), d = num(f, 'd');
      const ancestor = d < zd && x <= zx + eps && x + w >= zx + zw - eps;
      const inside = d >= zd && x >= zx - eps && x + w <= zx + zw + eps;
      f.hidden = !(ancestor || inside);
      if (f.hidden) continue;
      f.style.left = ancestor ? '0%' : ((x - zx) / zw) * 100 + '%';
      f.style.width = ancestor ? '100%' : (w / zw) * 100 + '%';
    }
  });
})();
`;

export function renderProfilePage(view: ProfilePageView): string {
  const { merged } = view;
  const idle = [...merged.root.children.values()].find((n) => n.callFrame.functionName === '(idle)' && n.callFrame.url === '');
  const idleTime = idle?.selfTime ?? 0;
  const base = escapeHtml(view.base);
  const facts: Array<[string, string]> = [
    ['Requests profiled', String(view.requests)],
    ['Total sampled time', ms(merged.sampledTime)],
    ['of which idle', `${ms(idleTime)} (${percent(idleTime, merged.sampledTime)})`],
    ['Samples', String(merged.samples)],
    ['Profiling runs', String(merged.runs)],
    ['Sampling interval', `${view.samplingInterval} µs`],
    ['First request', view.discardFirstRequest ? 'discarded (warm-up)' : 'counted'],
    ['Profiling now', view.profilingNow ? 'yes' : 'no'],
  ];
  const dl = facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('');
  const failure = view.failure ? `<p class="failure">CPU profiler unavailable: ${escapeHtml(view.failure)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>CPU profile</title><style>${STYLE}</style></head><body>
<h1>CPU profile</h1>${failure}
<dl id="summary" data-requests="${view.requests}" data-sampled-time="${merged.sampledTime}" data-runs="${merged.runs}" data-profiling="${view.profilingNow}">${dl}</dl>
<div class="actions"><a href="${base}/profile.cpuprofile" download="profile.cpuprofile">Download .cpuprofile</a>
<form method="post" action="${base}/clear"><button type="submit">Clear</button></form></div>
<h2>Flame graph</h2><p class="empty">Width is total time; click a frame to zoom, the top bar to reset. Frames under ${MIN_FRAME_WIDTH * 100}% are left out.</p>
<div id="hover"></div>
${flameGraph(merged)}
<h2>Functions</h2>
${table(view)}
<script nonce="${escapeHtml(view.nonce)}">${SCRIPT}</script>
</body></html>`;
}
