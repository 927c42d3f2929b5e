// Vigil's dashboard: one page, no framework, no build step. It speaks the
// remote API only (docs/api.md), with the credentials the API takes: a
// client certificate (the browser's), or a bearer token the user pastes,
// kept in sessionStorage and sent in the Authorization header. The event
// stream is read with fetch() (EventSource cannot send that header).
'use strict';

const TOKEN_KEY = 'vigil-token';
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');

// Element maker: h('td', {class: 'x', text: 'y'}, child...).
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const me = { operate: false, identity: null };

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { status: 0, json: { ok: false, error: 'cannot reach vigil: ' + e.message } };
  }
  let json;
  try { json = JSON.parse(await res.text()); } catch (e) { json = { ok: false, error: 'not JSON (HTTP ' + res.status + ')' }; }
  if (res.status === 401) showToken(json.error);
  return { status: res.status, json };
}

function flash(text, bad) {
  const f = $('#flash');
  f.textContent = text;
  f.className = 'flash' + (bad ? ' bad' : '');
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => f.classList.add('hidden'), 8000);
}

function showToken(why) {
  $('#token-form').classList.remove('hidden');
  if (why) flash(why, true);
}

// Durations and figures --------------------------------------------------

function fmtDuration(s) {
  if (s === null || s === undefined || isNaN(s)) return '';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? ' ' + (s % 60) + 's' : '');
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}
function fmtBudget(b) {
  if (!b || b.limit === undefined) return '';
  return `${b.used} of ${b.limit} in ${fmtDuration(b.within)}` + (b.owner && b.owner !== b.name ? ` (${b.owner})` : '');
}
function fmtProbes(w) {
  if (!w.probes || !w.probes.length) return '';
  return w.probes.map(p => `${p.name}: ${p.passing === undefined ? 'waiting' : p.passing ? 'passing' : 'failing' + (p.fails ? ' ×' + p.fails : '')}`).join(', ');
}
// A restart on its way: the host's "backoff" (a watch's own delay), or
// "waiting" with a restart_in (its turn in its group's order).
function stateLabel(w) {
  if (w.state === 'backoff' || (w.state === 'waiting' && w.restart_in !== undefined)) return 'restarting';
  return w.state || '';
}
function stateCell(state, paused, w) {
  const label = w ? stateLabel(w) : state || '';
  return h('span', { class: 'state state-' + (label === 'restarting' ? 'backoff' : state), text: label + (paused ? ' (paused)' : '') });
}

// The event stream -------------------------------------------------------

const stream = { lastSeq: 0, listeners: new Set(), controller: null, backoff: 500, running: false, wake: null };

async function runStream() {
  for (;;) {
    const headers = { Accept: 'text/event-stream' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (stream.lastSeq) headers['Last-Event-ID'] = String(stream.lastSeq);
    stream.controller = new AbortController();
    try {
      const res = await fetch('/v1/events/stream', { headers, signal: stream.controller.signal });
      if (res.status === 401) { showToken('the event stream needs credentials'); throw new Error('401'); }
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setLive(true);
      stream.backoff = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          dispatchBlock(block);
        }
      }
    } catch (e) { /* reconnect below */ }
    setLive(false);
    // Until the backoff is over, or a new token is given (restartStream).
    await new Promise(r => { stream.wake = r; setTimeout(r, stream.backoff); });
    stream.backoff = Math.min(stream.backoff * 2, 10000);
  }
}

// With new credentials: (re)connect now.
function restartStream() {
  if (!stream.running) { stream.running = true; runStream(); return; }
  stream.backoff = 500;
  if (stream.controller) stream.controller.abort();
  if (stream.wake) stream.wake();
}

function dispatchBlock(block) {
  let id = '', type = '', data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const k = i < 0 ? line : line.slice(0, i);
    const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (k === 'id') id = v; else if (k === 'event') type = v; else if (k === 'data') data += (data ? '\n' : '') + v;
  }
  if (!data) return;
  if (id) stream.lastSeq = Number(id);
  let ev;
  try { ev = JSON.parse(data); } catch (e) { return; }
  for (const f of stream.listeners) f(type || 'event', ev);
}

function setLive(on) {
  const l = $('#live');
  l.textContent = on ? 'live' : 'offline';
  l.className = 'live ' + (on ? 'on' : 'off');
}

// The page's views -------------------------------------------------------

let view = null;  // { listener, timers } of the view on screen

function leave() {
  if (!view) return;
  if (view.listener) stream.listeners.delete(view.listener);
  for (const t of view.timers || []) clearInterval(t);
  view = null;
}

function route() {
  leave();
  const hash = decodeURIComponent(location.hash.slice(1) || '/');
  const m = hash.match(/^\/(watch|group)\/(.+)$/);
  if (m) return m[1] === 'watch' ? showWatch(m[2]) : showGroup(m[2]);
  if (hash === '/new') return showNew();
  return showOverview();
}

function actionButtons(kind, name) {
  if (!me.operate) return null;
  const base = `/v1/${kind === 'group' ? 'groups' : 'watches'}/${encodeURIComponent(name)}/`;
  return h('span', { class: 'actions' }, ['start', 'stop', 'restart', 'pause', 'resume'].map(a =>
    h('button', { type: 'button', 'data-action': a, text: a, onclick: async (e) => {
      e.target.disabled = true;
      const r = await api('POST', base + a);
      e.target.disabled = false;
      flash(r.json.ok ? `${name}: ${a} done` : `${name}: ${a}: ${r.json.error}`, !r.json.ok);
    } })));
}

// Overview: every group as a tree in start order, then the watches of no group.
async function showOverview() {
  const v = view = { rows: new Map(), timers: [] };
  const r = await api('GET', '/v1/status');
  if (view !== v) return;
  if (!r.json.ok) { main().replaceChildren(h('p', { class: 'err', text: r.json.error })); return; }
  const st = r.json;
  const byName = new Map((st.watches || []).map(w => [w.name, w]));
  const tbody = h('tbody');
  const placed = new Set();
  const row = (w, indent) => {
    const tr = h('tr', { 'data-watch': w.name });
    tr.append(h('td', { class: indent ? 'indent' : '' }, h('a', { href: '#/watch/' + encodeURIComponent(w.name), text: w.name })),
      h('td', { class: 'c-state' }), h('td', { class: 'c-pid wide' }), h('td', { class: 'c-uptime' }),
      h('td', { class: 'c-restarts' }), h('td', { class: 'c-budget wide' }), h('td', { class: 'c-probes wide' }),
      h('td', { class: 'actions' }, actionButtons('watch', w.name)));
    v.rows.set(w.name, { tr, w, at: performance.now() });
    fill(w.name, w);
    return tr;
  };
  const fill = (name, w) => {
    const rec = v.rows.get(name);
    if (!rec) return;
    if (!('restart_in' in w)) delete rec.w.restart_in;  // a field only some states have
    Object.assign(rec.w, w);
    rec.at = performance.now();
    const tr = rec.tr;
    $('.c-state', tr).replaceChildren(stateCell(rec.w.state, rec.w.paused, rec.w));
    $('.c-pid', tr).textContent = rec.w.pid || '';
    $('.c-uptime', tr).textContent = rec.w.pid ? fmtDuration(rec.w.uptime) : '';
    $('.c-restarts', tr).textContent = rec.w.restarts ?? '';
    if ('budget' in w) $('.c-budget', tr).textContent = fmtBudget(rec.w.budget);
    if ('probes' in w || 'budget' in w) $('.c-probes', tr).textContent = fmtProbes(rec.w);
  };
  for (const g of st.groups || []) {
    tbody.append(h('tr', { class: 'group-row', 'data-group': g.group },
      h('td', {}, h('a', { href: '#/group/' + encodeURIComponent(g.group), text: g.group }), ' ', h('span', { class: 'muted', text: g.strategy || '' })),
      h('td', {}, stateCell(g.state)), h('td', { class: 'wide' }), h('td'),
      h('td', { text: g.restarts ?? '' }), h('td', { class: 'wide' }), h('td', { class: 'wide' }),
      h('td', { class: 'actions' }, actionButtons('group', g.group))));
    for (const m of g.members || []) {
      const w = byName.get(m.watch);
      if (!w || placed.has(w.name)) continue;
      placed.add(w.name);
      tbody.append(row(w, true));
    }
  }
  for (const w of st.watches || []) if (!placed.has(w.name)) tbody.append(row(w, false));
  const d = st.daemon || {};
  // Remote watches, peers (remote nodes) and the cluster, when this node has them.
  const extra = [];
  const titles = { remote: 'Remote watches', peers: 'Remote nodes', containers: 'Containers' };
  for (const key of Object.keys(titles)) {
    const x = st[key] || d[key];
    if (Array.isArray(x) && x.length) extra.push(h('h2', { text: titles[key] }), plainTable(x));
  }
  if (st.cluster) extra.push(h('h2', { text: 'Cluster' }), h('pre', { text: JSON.stringify(st.cluster, null, 2) }));
  main().replaceChildren(
    h('h1', { text: `Overview: ${(st.watches || []).length} watches, ${(st.groups || []).length} groups` }),
    h('p', { class: 'muted', text: `vigil ${d.version || ''}, pid ${d.pid || ''}, since ${d.since || ''}` }),
    h('table', { class: 'watches' }, h('thead', {}, h('tr', {},
      ['watch', 'state', 'pid', 'uptime', 'restarts', 'budget', 'probes', ''].map((t, i) =>
        h('th', { class: [2, 5, 6].includes(i) ? 'wide' : '', text: t })))), tbody),
    ...extra);
  document.body.dataset.rendered = 'overview';

  // Budgets and probes: the inspect of every watch, a batch at a time
  // (status stays the small reply the first render needs).
  const names = [...v.rows.keys()];
  const inspect = async (list) => {
    for (let i = 0; i < list.length; i += 200) {
      const batch = list.slice(i, i + 200);
      const q = await api('GET', '/v1/inspect?events=0&names=' + batch.map(encodeURIComponent).join(','));
      if (view !== v || !q.json.ok) return;
      for (const it of q.json.items || []) if (it.kind === 'watch') fill(it.name, it);
    }
  };
  inspect(names);

  // Live: the watches events name are read again (a batch every 200 ms).
  const dirty = new Set();
  let pending = null;
  v.listener = (type, ev) => {
    if (type === 'gap' || ev.event === 'rules_loaded') { if (view === v) route(); return; }
    if (ev.watch && v.rows.has(ev.watch)) dirty.add(ev.watch);
    if (dirty.size && !pending) pending = setTimeout(() => {
      pending = null;
      const list = [...dirty];
      dirty.clear();
      inspect(list);
    }, 200);
  };
  stream.listeners.add(v.listener);
  // Uptimes go on between events.
  v.timers.push(setInterval(() => {
    const now = performance.now();
    for (const rec of v.rows.values())
      if (rec.w.pid && rec.w.state === 'running')
        $('.c-uptime', rec.tr).textContent = fmtDuration(rec.w.uptime + (now - rec.at) / 1000);
  }, 5000));
}

// A table of objects whose fields are not known here: their scalar fields as columns.
function plainTable(list) {
  const cols = [...new Set(list.flatMap(o => Object.keys(o).filter(k => typeof o[k] !== 'object' || o[k] === null)))].slice(0, 8);
  return h('table', { class: 'plain' }, h('thead', {}, h('tr', {}, cols.map(c => h('th', { text: c })))),
    h('tbody', {}, list.map(o => h('tr', {}, cols.map(c => h('td', { text: o[c] === undefined || o[c] === null ? '' : String(o[c]) }))))));
}

function eventsTable(list) {
  return h('table', {}, h('thead', {}, h('tr', {}, ['seq', 'time', 'id', 'severity', 'message'].map(t => h('th', { text: t })))),
    h('tbody', {}, list.map(e => h('tr', { 'data-seq': e.seq },
      h('td', { text: e.seq }), h('td', { text: (e.time || '').replace('T', ' ').replace(/\..*/, '') }),
      h('td', { text: e.id }), h('td', { text: e.severity }), h('td', { text: e.message }))).reverse()));
}

// A small line plot of the samples the page has seen (the daemon keeps
// only the newest sample of each watch in memory: the CSV files hold the rest).
function plot(samples, key, scale = 1) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'plot');
  svg.setAttribute('viewBox', '0 0 300 90');
  svg.setAttribute('preserveAspectRatio', 'none');
  const pts = samples.filter(s => typeof s[key] === 'number');
  if (pts.length > 1) {
    const t0 = pts[0].t, t1 = pts[pts.length - 1].t || t0 + 1;
    const max = Math.max(...pts.map(s => s[key])) || 1;
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', pts.map(s => `${(300 * (s.t - t0) / (t1 - t0 || 1)).toFixed(1)},${(88 - 84 * s[key] / max).toFixed(1)}`).join(' '));
    svg.append(line);
    const label = document.createElementNS('http://www.w3.org/2000/svg', 'text');
    label.setAttribute('x', '4'); label.setAttribute('y', '12'); label.setAttribute('font-size', '10');
    label.textContent = 'max ' + (max / scale).toFixed(scale === 1 ? 1 : 0);
    svg.append(label);
  }
  return svg;
}

async function showWatch(name) { return showUnit('watch', name); }
async function showGroup(name) { return showUnit('group', name); }

async function showUnit(kind, name) {
  const v = view = { timers: [], samples: [] };
  const path = kind === 'group' ? '/v1/groups/' : '/v1/watches/';
  const q = encodeURIComponent(name);
  const [ins, exp, dumps] = await Promise.all([api('GET', path + q + '?events=0'), api('GET', '/v1/explain/' + q),
    api('GET', '/v1/dumps?watch=' + q)]);
  if (view !== v) return;
  if (!ins.json.ok) { main().replaceChildren(h('p', { class: 'err', text: ins.json.error })); return; }
  const box = {
    head: h('div'), decision: h('pre', { class: 'decision' }), events: h('div'),
    dumps: h('div'), plots: h('div', { class: 'cards' }),
  };
  const idFilter = h('input', { id: 'ev-id', placeholder: 'VGLnnnn', size: 8 });
  const sevFilter = h('select', { id: 'ev-sev' }, ['', 'debug', 'info', 'notice', 'warning', 'error', 'critical'].map(s => h('option', { value: s, text: s || 'any severity' })));
  const loadEvents = async () => {
    const id = idFilter.value.trim();
    const r = await api('GET', '/v1/events?max=200&watch=' + q + (id ? '&id=' + encodeURIComponent(id) : ''));
    if (view !== v) return;
    const sev = sevFilter.value;
    const list = (r.json.events || []).filter(e => e && (!sev || e.severity === sev));
    box.events.replaceChildren(list.length ? eventsTable(list) : h('p', { class: 'muted', text: 'no events' }));
  };
  idFilter.addEventListener('change', loadEvents);
  sevFilter.addEventListener('change', loadEvents);
  const renderHead = (it) => {
    const rows = kind === 'group'
      ? [['state', stateCell(it.state)], ['strategy', it.strategy], ['restarts', it.restarts], ['budget', fmtBudget(it.budget)],
         ['members', h('span', {}, (it.members || []).map(m => h('span', {}, h('a', { href: '#/watch/' + encodeURIComponent(m.watch), text: m.watch }), ` (${m.state}) `)))],
         ['declared at', it.where]]
      : [['state', stateCell(it.state, it.paused, it)], ['pid', it.pid || ''], ['uptime', it.pid ? fmtDuration(it.uptime) : ''],
         ['restarts', it.restarts], ['budget', fmtBudget(it.budget)], ['probes', fmtProbes(it)],
         ['group', it.group || ''], ['last exit', it.last_exit ? JSON.stringify(it.last_exit) : ''], ['declared at', it.where]];
    box.head.replaceChildren(h('table', { class: 'unit' }, h('tbody', {}, rows.map(([k, x]) => h('tr', {}, h('th', { text: k }), h('td', {}, x ?? ''))))));
  };
  const it = (ins.json.items || [])[0] || {};
  renderHead(it);
  // A group's member is decided for by its group: its decision is the group's.
  const showDecision = async (e) => {
    let text = e.json.ok ? JSON.stringify(e.json.decision, null, 2) + (e.json.restarts_recorded !== undefined ? `\nrestarts recorded: ${e.json.restarts_recorded}` : '') : e.json.error;
    const group = kind === 'watch' && (e.json.status || {}).group;
    if (group) {
      const g = await api('GET', '/v1/explain/' + encodeURIComponent(group));
      if (g.json.ok) text += `\n\ngroup ${group}:\n` + JSON.stringify(g.json.decision, null, 2);
    }
    if (view === v) box.decision.textContent = text;
  };
  showDecision(exp);
  const dl = (dumps.json.dumps || []);
  box.dumps.replaceChildren(dl.length ? h('ul', {}, dl.map(d => h('li', { text: `${d.time} ${d.trigger} (${d.files} files, ${d.bytes} bytes) ${d.path}` })))
    : h('p', { class: 'muted', text: dumps.json.ok ? 'no dumps' : dumps.json.error }));
  const sections = [h('h1', { text: `${kind} ${name}` }), h('div', {}, actionButtons(kind, name)), box.head,
    h('h2', { text: 'Last decision (explain)' }), box.decision,
    h('h2', { text: 'Events' }), h('div', { class: 'filters' }, idFilter, sevFilter), box.events,
    h('h2', { text: 'Dumps' }), box.dumps];
  // The output tail: for operators (the API's default; output may hold secrets).
  const output = { stdout: h('pre', { id: 'out-stdout', class: 'output' }), stderr: h('pre', { id: 'out-stderr', class: 'output' }) };
  const loadOutput = async () => {
    for (const which of ['stdout', 'stderr']) {
      const r = await api('GET', `/v1/watches/${q}/output?stream=${which}&bytes=8192`);
      if (view !== v) return;
      output[which].textContent = r.json.ok ? (r.json.text || '(nothing yet)') : r.json.error;
      output[which].classList.toggle('muted', !r.json.ok);
    }
  };
  if (kind === 'watch' && me.operate)
    sections.push(h('h2', { text: 'Output (the last 8 KiB)' }), h('h3', { text: 'stdout' }), output.stdout,
      h('h3', { text: 'stderr' }), output.stderr);
  if (kind === 'watch') sections.push(h('h2', { text: 'CPU, memory, fds (samples seen since this page opened)' }), box.plots);
  main().replaceChildren(...sections);
  document.body.dataset.rendered = kind;
  loadEvents();
  if (kind === 'watch' && me.operate) { loadOutput(); v.timers.push(setInterval(loadOutput, 5000)); }

  const refresh = async () => {
    const r = await api('GET', path + q + '?events=0');
    if (view !== v || !r.json.ok) return;
    renderHead((r.json.items || [])[0] || {});
    showDecision(await api('GET', '/v1/explain/' + q));
  };
  let pending = null;
  v.listener = (type, ev) => {
    if (ev.watch !== name && !(kind === 'group' && ev.fields && ev.fields.group === name)) return;
    if (!pending) pending = setTimeout(() => { pending = null; refresh(); loadEvents(); }, 200);
  };
  stream.listeners.add(v.listener);

  if (kind === 'watch') {
    // The last hour the daemon kept, then a sample every 5 s.
    const seeded = (async () => {
      const r = await api('GET', '/v1/watches/' + q + '/metrics');
      if (view !== v || !r.json.ok) return;
      for (const [t, cpu, rss, fds] of r.json.points || [])
        v.samples.push({ t, cpu, rss, fds });
    })();
    const sample = async () => {
      await seeded;
      const r = await api('GET', '/v1/metrics');
      if (view !== v) return;
      if (!r.json.ok) { box.plots.replaceChildren(h('p', { class: 'muted', text: r.json.error })); return; }
      const s = (r.json.watches || []).find(x => x.watch === name);
      if (s) {
        const t = Date.parse(s.time) / 1000;
        if (!v.samples.length || v.samples[v.samples.length - 1].t < t)
          v.samples.push({ t, cpu: (s.cpu_user_percent || 0) + (s.cpu_system_percent || 0), rss: s.rss_bytes, fds: s.open_fds });
        v.samples = v.samples.filter(x => x.t > t - 3600);
      }
      box.plots.replaceChildren(
        h('div', { class: 'card' }, h('h3', { text: 'CPU %' }), plot(v.samples, 'cpu')),
        h('div', { class: 'card' }, h('h3', { text: 'RSS MiB' }), plot(v.samples, 'rss', 1048576)),
        h('div', { class: 'card' }, h('h3', { text: 'open fds' }), plot(v.samples, 'fds')));
    };
    sample();
    v.timers.push(setInterval(sample, 5000));
  }
}

// The rule form: made from the schema the stdlib checks rules with ------

const luaStr = (s) => '"' + String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r') + '"';
const luaKey = (k) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !['for', 'end', 'and', 'or', 'not', 'if', 'then', 'do', 'in', 'function', 'local', 'nil', 'true', 'false', 'return', 'repeat', 'until', 'while', 'break', 'goto', 'else', 'elseif'].includes(k) ? k : '[' + luaStr(k) + ']';

// The keys a watch form shows first; every other key of the schema is
// under "More keys". (Presentation only: what each key takes is the schema's.)
const MAIN_KEYS = ['start', 'match', 'restart', 'probes', 'checks', 'description'];

function typeText(d) {
  if (!d) return '';
  if (d.type === 'integer') return 'integer' + (d.min !== undefined || d.max !== undefined ? ` [${d.min ?? ''}..${d.max ?? ''}]` : '');
  if (d.type === 'enum') return 'one of ' + d.values.join(', ');
  if (d.type === 'list') return 'list of ' + (d.of || 'values') + ', comma-separated';
  if (d.type === 'map') return 'KEY=VALUE lines';
  if (d.type === 'command') return 'argv, split at spaces';
  return d.format || d.type;
}

// A form field for one schema entry: { el, emit() -> Lua text or null, set(v) }.
function field(key, d, path, registry) {
  const id = 'f-' + path.replace(/[^A-Za-z0-9_-]/g, '_');
  if (d.type === 'union') {
    const o = d.options || {};
    if (o.table && o.table.type === 'table') return field(key, o.table, path, registry);
    const pick = o.string || o.integer || o.number || o.boolean || o.table;
    if (!pick) return null;
    return field(key, pick, path, registry);
  }
  if (d.type === 'table') {
    const kids = [];
    const fs = h('fieldset', { 'data-key': path }, h('legend', { text: key }));
    for (const k of Object.keys(d.fields || {}).sort()) {
      const f = field(k, d.fields[k], path + '.' + k, registry);
      if (f) { kids.push([k, f]); fs.append(f.el); }
    }
    if (!kids.length) return null;
    const det = h('details', { 'data-key': path }, h('summary', { text: key }), fs);
    const f = {
      el: det,
      emit: () => {
        const parts = kids.map(([k, c]) => { const x = c.emit(); return x === null ? null : `${luaKey(k)} = ${x}`; }).filter(x => x);
        return parts.length ? '{ ' + parts.join(', ') + ' }' : null;
      },
    };
    registry.set(path, { field: f, el: det });
    return f;
  }
  if (d.type === 'probes') return probesField(key, d, path, registry);
  if (d.type === 'function' || d.type === 'custom') return null;
  let input;
  if (d.type === 'enum') input = h('select', { id }, h('option', { value: '', text: '' }), d.values.map(x => h('option', { value: x, text: x })));
  else if (d.type === 'boolean') input = h('select', { id }, ['', 'true', 'false'].map(x => h('option', { value: x, text: x })));
  else if (d.type === 'map') input = h('textarea', { id, rows: 2 });
  else input = h('input', { id, placeholder: d.example || '' });
  input.dataset.path = path;
  const wrap = h('div', { class: 'field', 'data-key': path }, h('label', { for: id }, key + ' ', h('span', { class: 'type', text: typeText(d) })), input);
  const f = {
    el: wrap,
    emit: () => {
      const raw = input.value.trim();
      if (raw === '') return null;
      switch (d.type) {
        case 'boolean': return raw;
        case 'integer': return /^-?\d+$/.test(raw) ? raw : luaStr(raw);  // not a number: the check says so
        case 'command': return '{ ' + raw.split(/\s+/).map(luaStr).join(', ') + ' }';
        case 'list': return '{ ' + raw.split(',').map(x => x.trim()).filter(x => x).map(x => /^-?\d+$/.test(x) && d.of !== 'string' && d.of !== 'name' ? x : luaStr(x)).join(', ') + ' }';
        case 'map': return '{ ' + raw.split('\n').filter(l => l.includes('=')).map(l => { const i = l.indexOf('='); return `${luaKey(l.slice(0, i).trim())} = ${luaStr(l.slice(i + 1).trim())}`; }).join(', ') + ' }';
        default: return luaStr(raw);
      }
    },
    set: (x) => { input.value = x; },
  };
  registry.set(path, { field: f, el: wrap });
  return f;
}

// The probe kinds in the order the form offers them (exec is for containers).
const PROBE_ORDER = ['http', 'tcp', 'script', 'file', 'notify', 'exec'];

function probesField(key, d, path, registry) {
  const list = [];
  const holder = h('div');
  const kindSel = h('select', { id: 'probe-kind' }, Object.keys(d.kinds || {}).filter(k => k !== 'rule').sort((a, b) => (PROBE_ORDER.indexOf(a) + 1 || 99) - (PROBE_ORDER.indexOf(b) + 1 || 99)).map(k => h('option', { value: k, text: k })));
  const add = (kind) => {
    const i = list.length + 1;
    const fs = h('fieldset', { 'data-key': `${path}[${i}]` }, h('legend', { text: `${kind} probe ${i}` }));
    const kids = [];
    const spec = d.kinds[kind];
    const required = (d.required || {})[kind] || [];
    for (const k of Object.keys(spec.fields || {}).sort((a, b) => (required.includes(b) - required.includes(a)) || a.localeCompare(b))) {
      const f = field(k + (required.includes(k) ? ' *' : ''), spec.fields[k], `${path}[${i}].${k}`, registry);
      if (!f) continue;
      kids.push([k, f]);
      fs.append(f.el);
      // A probe constructor's errors name the kind, not the index ("http.url: ..."):
      // they go beside the first probe of that kind.
      if (!registry.has(`${kind}.${k}`)) registry.set(`${kind}.${k}`, registry.get(`${path}[${i}].${k}`));
    }
    const entry = { kind, kids, el: fs };
    fs.append(h('button', { type: 'button', text: 'remove probe', onclick: () => { list.splice(list.indexOf(entry), 1); fs.remove(); holder.dispatchEvent(new Event('input', { bubbles: true })); } }));
    list.push(entry);
    holder.append(fs);
    holder.dispatchEvent(new Event('input', { bubbles: true }));
  };
  const el = h('details', { 'data-key': path, open: true }, h('summary', { text: key }), holder,
    h('div', {}, kindSel, h('button', { type: 'button', id: 'probe-add', text: 'add probe', onclick: () => add(kindSel.value) })));
  const f = {
    el,
    emit: () => {
      const ps = list.map(p => {
        const parts = p.kids.map(([k, c]) => { const x = c.emit(); return x === null ? null : `${luaKey(k)} = ${x}`; }).filter(x => x);
        return `${p.kind} { ${parts.join(', ')} }`;
      });
      return ps.length ? '{ ' + ps.join(', ') + ' }' : null;
    },
  };
  registry.set(path, { field: f, el });
  return f;
}

async function showNew() {
  const v = view = { timers: [] };
  const [ws, gs, files, disc] = await Promise.all([api('GET', '/v1/schema/watch'), api('GET', '/v1/schema/group'),
    api('GET', '/v1/rules'), api('GET', '/v1/discover')]);
  if (view !== v) return;
  if (!ws.json.ok) { main().replaceChildren(h('p', { class: 'err', text: ws.json.error })); return; }
  const schema = ws.json.schema;
  const registry = new Map();
  const nameIn = h('input', { id: 'f-name', placeholder: 'web', required: true });
  const fileIn = h('input', { id: 'f-file', placeholder: 'web.lua' });
  const groupIn = h('input', { id: 'f-group', placeholder: '(none)' });
  const strategy = gs.json.ok && gs.json.schema.fields.strategy;
  const strategyIn = h('select', { id: 'f-strategy' }, (strategy ? strategy.values : []).map(x => h('option', { value: x, text: x })));
  const fields = [];
  const mainBox = h('div'), moreBox = h('div');
  for (const k of Object.keys(schema.fields).sort((a, b) => (MAIN_KEYS.indexOf(a) + 1 || 99) - (MAIN_KEYS.indexOf(b) + 1 || 99) || a.localeCompare(b))) {
    const f = field(k, schema.fields[k], k, registry);
    if (!f) continue;
    fields.push([k, f]);
    (MAIN_KEYS.includes(k) ? mainBox : moreBox).append(f.el);
  }
  // The file as the form read it (its text: what the form's watch is added to)
// and the hash the form last saw (the read, then each write of its own).
  const fileState = { name: '', hash: '', base: '', exists: false };
  const out = h('pre', { id: 'lua' });
  const errBox = h('div', { id: 'errors' });
  const status = h('p', { id: 'form-status', class: 'muted' });
  const fileName = () => fileIn.value.trim() || (nameIn.value.trim() ? nameIn.value.trim().toLowerCase().replace(/[^a-z0-9_-]/g, '_') + '.lua' : '');

  const generate = () => {
    const name = nameIn.value.trim();
    const parts = fields.map(([k, f]) => { const x = f.emit(); return x === null ? null : `  ${luaKey(k)} = ${x},`; }).filter(x => x);
    let text = `watch ${luaStr(name)} {\n${parts.join('\n')}\n}\n`;
    const g = groupIn.value.trim();
    if (g) text += `group ${luaStr(g)} { strategy = ${luaStr(strategyIn.value)}, ${luaStr(name)} }\n`;
    // Added to the file as it was read (a new file: this alone).
    const whole = fileState.exists && fileState.base ? fileState.base.replace(/\n*$/, '\n\n') + text : text;
    out.textContent = whole;
    return whole;
  };
  const readFile = async () => {
    const f = fileName();
    if (!f || f === fileState.name) return;
    const r = await api('GET', '/v1/rules/' + encodeURIComponent(f));
    if (!r.json.ok) { status.textContent = r.json.error; status.className = 'err'; return; }
    Object.assign(fileState, { name: f, hash: r.json.hash, base: r.json.text, exists: r.json.exists });
    status.textContent = r.json.exists ? `${f} exists: the watch is added at its end (read at hash ${r.json.hash.slice(0, 19)}…)` : `${f} is a new file`;
    status.className = 'muted';
    generate();
  };
  const clearErrors = () => {
    errBox.replaceChildren();
    for (const e of main().querySelectorAll('.field-error')) e.remove();
    for (const e of main().querySelectorAll('.has-error')) e.classList.remove('has-error');
  };
  const showErrors = (list, fallback) => {
    clearErrors();
    if (!list || !list.length) list = [{ message: fallback }];
    for (const e of list) {
      const where = e.file ? `${e.file}:${e.line}: ` : '';
      errBox.append(h('p', { class: 'err', text: where + e.message }));
      // Beside its field: the key's path, or the nearest enclosing one.
      let key = e.key || ((e.message || '').match(/^([a-z]+\.[A-Za-z0-9_]+):/) || [])[1] || '';
      let target = null;
      while (key && !(target = registry.get(key))) key = key.replace(/(\.[^.]*|\[\d+\])$/, '');
      const el = target ? target.el : (e.message.includes('watch') ? nameIn.parentElement : null);
      if (el) {
        el.classList.add('has-error');
        if (el.tagName === 'DETAILS') el.open = true;
        el.append(h('div', { class: 'err field-error', text: where + e.message }));
      }
    }
  };
  const send = async (what) => {
    await readFile();
    const text = generate();
    const name = fileName();
    if (!nameIn.value.trim()) return showErrors([], 'give the watch a name');
    status.textContent = what === 'check' ? 'checking…' : 'writing…';
    const r = await api('POST', '/v1/rules/' + what, { name, text, hash: fileState.hash });
    if (view !== v) return;
    if (r.json.ok) {
      clearErrors();
      status.className = 'ok';
      status.textContent = what === 'check' ? `${name}: OK (vigil check)` : `${name} written and loaded`;
      // Written: the form's watch is now the file's tail, which the next write replaces.
      if (what === 'write') { fileState.hash = r.json.hash; flash(`${name} written; the rules reloaded`); }
    } else {
      status.className = 'err';
      if (r.status === 409 && r.json.changed) { clearErrors(); status.textContent = r.json.error; return; }
      status.textContent = `${what} failed (HTTP ${r.status})`;
      showErrors(r.json.errors, r.json.error);
    }
  };

  const discBox = h('div', { id: 'discovery' });
  if (disc.status === 404) discBox.append(h('p', { class: 'muted', text: 'no discovery run' }));
  else if (!disc.json.ok) discBox.append(h('p', { class: 'err', text: disc.json.error }));
  else {
    const cands = disc.json.candidates || [];
    if (!cands.length) discBox.append(h('p', { class: 'muted', text: 'discovery found nothing to watch' }));
    discBox.append(h('ul', {}, cands.map(c => h('li', {}, `${c.name} `, h('span', { class: 'muted', text: (c.process && (c.process.exe || '')) + ' ' }),
      h('button', { type: 'button', text: 'adopt', onclick: () => {
        nameIn.value = c.name;
        const p = c.process || {};
        const set = (k, x) => { const r = registry.get(k); if (r && r.field.set && x !== undefined && x !== null) { r.field.set(String(x)); if (r.el.closest('details')) r.el.closest('details').open = true; } };
        set('match.exe', p.exe); set('match.user', p.user); set('match.cmdline', c.match_cmdline); set('mode', 'observe');
        generate();
      } })))));
  }

  const form = h('form', { class: 'rule', id: 'rule-form', oninput: generate, onsubmit: (e) => { e.preventDefault(); send('check'); } },
    h('div', {},
      h('div', { class: 'field', 'data-key': 'name' }, h('label', { for: 'f-name', text: 'watch name' }), nameIn),
      h('div', { class: 'field' }, h('label', { for: 'f-file' }, 'rule file ', h('span', { class: 'type', text: '[a-z0-9_-]+.lua in the rules directory' })), fileIn),
      mainBox,
      h('details', {}, h('summary', { text: 'More keys' }), moreBox),
      h('fieldset', {}, h('legend', { text: 'new group (declared in this file)' }),
        h('div', { class: 'field' }, h('label', { for: 'f-group', text: 'group name' }), groupIn),
        h('div', { class: 'field' }, h('label', { for: 'f-strategy', text: 'strategy' }), strategyIn))),
    h('div', {},
      h('h2', { text: 'Generated Lua' }), out,
      h('div', {}, h('button', { type: 'submit', id: 'check', text: 'Check' }),
        me.operate ? h('button', { type: 'button', id: 'write', class: 'primary', text: 'Write and reload', onclick: () => send('write') }) : null),
      status, errBox,
      h('h2', { text: 'Discovery proposals' }), discBox));
  fileIn.addEventListener('change', readFile);
  nameIn.addEventListener('change', () => { if (!fileIn.value.trim()) readFile(); });
  main().replaceChildren(...[h('h1', { text: 'New watch' }),
    files.json.ok ? null : h('p', { class: 'err', text: files.json.error }), form].filter(x => x));
  document.body.dataset.rendered = 'new';
  generate();
}

// Start -----------------------------------------------------------------

async function whoami() {
  const r = await api('GET', '/v1/whoami');
  if (!r.json.ok) return false;
  me.operate = !!r.json.operate;
  me.identity = r.json.identity;
  $('#who').textContent = `${me.identity.name || me.identity.kind} (${me.operate ? 'operate' : 'read'})`;
  document.body.dataset.role = me.operate ? 'operate' : 'read';
  return true;
}

document.addEventListener('DOMContentLoaded', async () => {
  $('#token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
    $('#token').value = '';
    if (await whoami()) {
      $('#token-form').classList.add('hidden');
      $('#flash').classList.add('hidden');
      restartStream();
      route();
    }
  });
  $('#token-clear').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  window.addEventListener('hashchange', route);
  // The stream's connection is given back at once (a browser keeps six per origin).
  window.addEventListener('pagehide', () => { if (stream.controller) stream.controller.abort(); });
  if (!(await whoami())) { showToken(); main().replaceChildren(h('p', { text: 'Give a token (or a client certificate) to see this node.' })); return; }
  route();
  restartStream();
});
