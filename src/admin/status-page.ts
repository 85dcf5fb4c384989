// The status page served at GET / on the admin listener: one self-contained HTML document (inline style and script,
// no external asset, works offline). It carries no data of its own but the node's name: the script fills it from the
// admin API and refreshes itself (status-page-script.ts).
import { STATUS_PAGE_SCRIPT } from './status-page-script'

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** Text for an HTML text node or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

const STYLE = `
:root { color-scheme: light; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #6e7781; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1f2328;
  background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 10px 20px; display: flex; flex-wrap: wrap; gap: 10px 18px;
  align-items: center; }
header h1 { font-size: 17px; margin: 0; font-weight: 600; }
header .node { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
header #updated { color: #c9d1d9; font-size: 12px; margin-left: auto; }
main { padding: 14px 20px; display: grid; gap: 14px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
h2 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eaeef2; vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id span { font-weight: 600; }
.addr, .muted { color: var(--muted); font-size: 12px; }
.reason { max-width: 380px; overflow-wrap: anywhere; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.badge.ok { color: var(--ok); } .badge.warn { color: var(--warn); } .badge.bad { color: #fff; background: var(--bad);
  border-color: var(--bad); } .badge.muted { color: var(--muted); }
header .badge.ok { color: #4ac26b; } header .badge.muted { color: #c9d1d9; }
#flags { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
#flags .why { color: #ffb3b3; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.swatch.pool { height: 3px; vertical-align: middle; }
.chart { display: block; max-width: 100%; height: auto; }
.chart .plot { fill: #fbfcfd; stroke: #eaeef2; }
.chart .grid { stroke: #eaeef2; }
.chart .axis { font-size: 10px; fill: var(--muted); }
.chart .marker { stroke-dasharray: 3 2; stroke-width: 1.2; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12px; margin-top: 4px; }
.cards { display: flex; gap: 22px; flex-wrap: wrap; }
.card b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
#events { list-style: none; margin: 0; padding: 0; font-size: 13px; }
#events li { display: flex; gap: 8px; align-items: baseline; padding: 2px 0; }
#events .when { color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.error, #problem { color: var(--bad); }
#problem { background: #ffebe9; border: 1px solid #ff8182; padding: 8px 12px; border-radius: 6px; }
form { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
input { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; width: 220px; }
button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 4px; background: #f6f8fa;
  cursor: pointer; }
.grid2 { display: grid; grid-template-columns: 2fr 1fr; gap: 14px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
`

/** The page for one node; `nonce` must match the Content-Security-Policy's script-src of the same response. */
export function statusPage(opts: { node: string; nonce: string }): string {
  const node = escapeHtml(opts.node)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>mxgate status · ${node}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>mxgate · <span class="node" id="node">${node}</span></h1>
  <div id="flags"></div>
  <span id="updated">loading…</span>
</header>
<main>
  <noscript><p id="noscript">This page needs JavaScript; the same data is at /api/status and /api/history.</p></noscript>
  <p id="problem" hidden></p>
  <section>
    <h2>Backends</h2>
    <table>
      <thead><tr><th>backend</th><th>state</th><th>reason</th><th>since</th><th>success (5 min)</th>
        <th>msg/min</th><th>in flight</th><th>success vs pool (<span id="window"></span>)</th></tr></thead>
      <tbody id="backends"></tbody>
    </table>
  </section>
  <div class="grid2">
    <section>
      <h2>Success ratio per backend and the pool, pooled over nodes</h2>
      <div id="chart"></div>
    </section>
    <section>
      <h2>State changes on this node</h2>
      <ul id="events"></ul>
    </section>
  </div>
  <section>
    <h2>Spool</h2>
    <div class="cards">
      <div class="card"><b id="spool-messages">–</b><span>messages</span></div>
      <div class="card"><b id="spool-oldest">–</b><span>oldest message</span></div>
      <div class="card"><b id="spool-bytes">–</b><span>bodies</span></div>
      <div class="card"><b id="spool-held">–</b><span>held</span></div>
      <div class="card"><b id="spool-full">–</b><span>&nbsp;</span></div>
    </div>
    <h2 style="margin-top:12px">Envelopes</h2>
    <form id="token-form" autocomplete="off">
      <input id="token" type="password" placeholder="admin token" autocomplete="off" aria-label="admin token">
      <button type="submit">Use token</button>
      <button type="button" id="forget" hidden>Forget token</button>
      <span id="token-state" class="muted"></span>
    </form>
    <div id="envelopes"></div>
  </section>
</main>
<script nonce="${escapeHtml(opts.nonce)}">${STATUS_PAGE_SCRIPT}</script>
</body>
</html>
`
}
