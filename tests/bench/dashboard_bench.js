// The dashboard's cost (docs/performance.md, "Issue 18: dashboard"):
//   1. the overview of 1000 watches: time to first render in chromium
//      (navigation start -> every row on the page), and until every row
//      has its budget (the inspect batches);
//   2. the daemon's CPU with 10 dashboards open: idle, and with events
//      flowing (20 watches whose process exits every second).
//
//   node tests/bench/dashboard_bench.js build/vigil [seconds per CPU window, default 30]
//
// Needs chromium and tests/web/node_modules (npm ci there). The API listens
// on loopback plain HTTP with a rule that lets anonymous clients read (a
// bench only: the page and its requests are the same with a token over TLS,
// plus TLS's cost).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const puppeteer = require(path.join(__dirname, '../web/node_modules/puppeteer-core'));

const vigil = path.resolve(process.argv[2] || 'build/vigil');
const windowS = Number(process.argv[3] || 30);
const W = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-dash-bench-'));
const port = 20000 + (process.pid % 10000);

// Nanoseconds on a CPU, all the daemon's threads (schedstat: finer than
// /proc/PID/stat's 10 ms ticks, which an idle daemon does not fill).
function cpuNs(pid) {
  let n = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try { n += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch (e) { /* ended */ }
  }
  return n;
}
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const wait = (ms) => new Promise(r => setTimeout(r, ms));

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error('timed out: ' + what);
    await wait(100);
  }
}

async function lastSeq() {
  return (await (await fetch(`http://127.0.0.1:${port}/v1/events?n=1`)).json()).last_seq;
}

async function status() {
  try { return await (await fetch(`http://127.0.0.1:${port}/v1/status`)).json(); } catch (e) { return null; }
}

(async () => {
  fs.mkdirSync(W + '/rules'); fs.mkdirSync(W + '/state');
  let rules = `api { listen = "127.0.0.1:${port}" }\n` +
    'function vigil.api.authorize(id, method, path) return method == "GET" end\n';
  for (let i = 0; i < 1000; i++) rules += `watch "w${i}" { start = { "/bin/sleep", "${100000 + i}" } }\n`;
  fs.writeFileSync(W + '/rules/many.lua', rules);
  const d = spawn(vigil, ['run', '--rules', W + '/rules', '--state-dir', W + '/state', '--socket', W + '/sock', '--quiet'],
    { stdio: 'ignore', detached: true });
  const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu'] });
  try {
    await until(async () => { const s = await status(); return s && s.watches && s.watches.filter(w => w.state === 'running').length === 1000; }, 120000, '1000 watches running');

    // 1. Time to first render, then to the budgets.
    const first = [], full = [];
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 800 });
    for (let run = 0; run < 6; run++) {
      await page.goto('about:blank');
      await page.goto(`http://127.0.0.1:${port}/#/`);
      await page.waitForFunction(() => document.querySelectorAll('tr[data-watch]').length === 1000, { timeout: 60000, polling: 'raf' });
      const t1 = await page.evaluate(() => performance.now());
      await page.waitForFunction(() => document.querySelector('tr[data-watch="w999"] .c-budget').textContent !== '', { timeout: 60000, polling: 50 });
      const t2 = await page.evaluate(() => performance.now());
      if (run > 0) { first.push(t1); full.push(t2); }  // the first load warms the caches
    }
    console.log(`overview, 1000 watches: first render ${median(first).toFixed(0)} ms (median of ${first.length}; ${first.map(x => x.toFixed(0)).join(' ')}), budgets on every row ${median(full).toFixed(0)} ms`);
    await page.close();

    // 2. The daemon's CPU with 10 dashboards open.
    const pages = [];
    // Each in a context of its own (ten users): a browser opens at most six
    // HTTP/1.1 connections to one origin, and each dashboard holds one for its stream.
    for (let i = 0; i < 10; i++) {
      const p = await (await browser.createBrowserContext()).newPage();
      await p.goto(`http://127.0.0.1:${port}/#/`);
      await p.waitForFunction(() => document.querySelectorAll('tr[data-watch]').length === 1000 && document.querySelector('#live.on'), { timeout: 60000 });
      pages.push(p);
    }
    await wait(3000);  // the pages' inspect batches are done
    let c0 = cpuNs(d.pid), t0 = Date.now();
    await wait(windowS * 1000);
    const idle = (cpuNs(d.pid) - c0) / 1e9 / ((Date.now() - t0) / 1000) * 100;
    console.log(`10 dashboards open, idle: daemon CPU ${idle.toFixed(4)} % of a core over ${windowS} s`);

    // Events flowing: 20 watches that exit every second and are restarted.
    let flap = rules;
    for (let i = 0; i < 20; i++) flap += `watch "f${i}" { start = { "/bin/sleep", "1" }, restart = { limit = 100000, within = "1m" } }\n`;
    fs.writeFileSync(W + '/rules/many.lua', flap);
    spawn(vigil, ['--socket', W + '/sock', 'reload'], { stdio: 'ignore' });
    await until(async () => { const s = await status(); return s && s.watches.length === 1020; }, 60000, 'the flapping watches');
    await wait(5000);  // pages re-rendered after rules_loaded
    const s0 = (await status()).watches.filter(w => w.name.startsWith('f')).reduce((n, w) => n + w.restarts, 0);
    const e0 = await lastSeq();
    c0 = cpuNs(d.pid); t0 = Date.now();
    await wait(windowS * 1000);
    const busy = (cpuNs(d.pid) - c0) / 1e9 / ((Date.now() - t0) / 1000) * 100;
    const s1 = (await status()).watches.filter(w => w.name.startsWith('f')).reduce((n, w) => n + w.restarts, 0);
    const rate = (s1 - s0) / ((Date.now() - t0) / 1000);
    const events = ((await lastSeq()) - e0) / ((Date.now() - t0) / 1000);
    // Without the pages, the same flapping: what the dashboards add.
    for (const p of pages) await p.close();
    await wait(2000);
    c0 = cpuNs(d.pid); t0 = Date.now();
    await wait(windowS * 1000);
    const bare = (cpuNs(d.pid) - c0) / 1e9 / ((Date.now() - t0) / 1000) * 100;
    console.log(`10 dashboards open, ${rate.toFixed(1)} restarts/s (${events.toFixed(1)} events/s): daemon CPU ${busy.toFixed(2)} % of a core; the same with no dashboard: ${bare.toFixed(2)} %`);
  } finally {
    await browser.close();
    try { process.kill(d.pid, 'SIGTERM'); } catch (e) { /* gone */ }
  }
})().catch(e => { console.error(e); process.exit(1); });
