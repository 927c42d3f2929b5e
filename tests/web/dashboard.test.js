// The dashboard in a real browser: Debian's chromium, headless, driven by
// puppeteer-core, against a real vigil that tests/e2e/dashboard_browser_test.cpp
// started. Every wait is for a state on the page, with a deadline.
//
//   VIGIL_URL=https://127.0.0.1:PORT OPERATOR_TOKEN=... READER_TOKEN=...
//   RULES_DIR=DIR ARTIFACTS=DIR [CHROMIUM=/usr/bin/chromium] node dashboard.test.js
//
// Exit 0: passed; 77: cannot run here (the reason is printed); else failed.
'use strict';
const fs = require('fs');
const path = require('path');

const SKIP = 77;
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
let puppeteer;
try { puppeteer = require('puppeteer-core'); } catch (e) {
  console.log('SKIP: puppeteer-core is not installed (run npm ci --no-audit --no-fund in tests/web)');
  process.exit(SKIP);
}
if (!fs.existsSync(chromium)) { console.log(`SKIP: no chromium at ${chromium}`); process.exit(SKIP); }

const url = process.env.VIGIL_URL;
const operator = process.env.OPERATOR_TOKEN;
const reader = process.env.READER_TOKEN;
const artifacts = process.env.ARTIFACTS || '.';
const T = 20000;  // a deadline for each wait (a noisy 2-core machine)
fs.mkdirSync(artifacts, { recursive: true });

function check(cond, what) { if (!cond) throw new Error('failed: ' + what); }
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name + '.png'), fullPage: true });

async function login(browser, token) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  await page.setViewport({ width: 1200, height: 800 });
  await page.goto(url + '/', { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#token-form:not(.hidden)', { timeout: T });
  await page.type('#token', token);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('body[data-rendered=overview]', { timeout: T });
  return { page, errors };
}

const rowState = (page, name) => page.$eval(`tr[data-watch="${name}"] .c-state`, e => e.textContent).catch(() => '');
async function waitRow(page, name, state) {
  await page.waitForFunction((n, s) => {
    const e = document.querySelector(`tr[data-watch="${n}"] .c-state`);
    return e && e.textContent.startsWith(s);
  }, { timeout: T }, name, state);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium, headless: true, acceptInsecureCerts: true,
    args: ['--no-sandbox', '--ignore-certificate-errors', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
  try {
    // An operator: the overview shows every watch, in its group's order.
    const t0 = Date.now();
    const op = await login(browser, operator);
    const page = op.page;
    await waitRow(page, 'web', 'running');
    await waitRow(page, 'db', 'running');
    console.log(`overview rendered ${Date.now() - t0} ms after the first request`);
    const order = await page.$$eval('tbody tr', rows => rows.map(r => r.dataset.group || r.dataset.watch));
    check(order.join(',').startsWith('shop,db,web'), 'the group "shop" is a tree in start order: ' + order);
    check(await page.$('tr[data-watch="web"] button[data-action=restart]'), 'an operator has action buttons');
    await page.waitForSelector('#live.on', { timeout: T });
    await shot(page, 'overview');

    // A killed process: its row turns to restarting and back, no reload.
    await page.evaluate(() => { window.__sameDocument = true; });
    const pid = Number(await page.$eval('tr[data-watch="web"] .c-pid', e => e.textContent));
    check(pid > 1, 'the row shows a pid');
    process.kill(pid, 'SIGKILL');
    await waitRow(page, 'web', 'restarting');
    await shot(page, 'overview-restarting');
    await page.waitForFunction(p => {
      const r = document.querySelector('tr[data-watch="web"]');
      return r && r.querySelector('.c-state').textContent === 'running' && r.querySelector('.c-pid').textContent !== String(p);
    }, { timeout: T }, pid);
    check(await page.evaluate(() => window.__sameDocument === true), 'the page was not reloaded');
    check((await page.$eval('tr[data-watch="web"] .c-restarts', e => e.textContent)) === '1', 'one restart counted');
    await page.waitForFunction(() => /1 of 3 in/.test(document.querySelector('tr[data-watch="web"] .c-budget').textContent), { timeout: T });

    // The watch page: its decision, its events, its figures.
    await page.click('tr[data-watch="web"] a');
    await page.waitForSelector('body[data-rendered=watch]', { timeout: T });
    await page.waitForFunction(() => /restart/.test(document.querySelector('.decision').textContent), { timeout: T });
    await page.waitForFunction(() => [...document.querySelectorAll('td')].some(td => td.textContent === 'VGL0101'), { timeout: T });
    await page.waitForFunction(() => document.querySelector('#out-stdout') && document.querySelector('#out-stdout').textContent !== '', { timeout: T });
    await page.select('#ev-sev', 'warning');
    await page.waitForFunction(() => ![...document.querySelectorAll('td')].some(td => td.textContent === 'VGL0101'), { timeout: T });
    await shot(page, 'watch');
    await page.goto(url + '/#/group/shop');
    await page.waitForSelector('body[data-rendered=group]', { timeout: T });
    await shot(page, 'group');

    // A reader: no action buttons, and a forged POST is refused.
    const rd = await login(browser, reader);
    await waitRow(rd.page, 'web', 'running');
    check((await rd.page.$$('button[data-action]')).length === 0, 'a reader sees no action buttons');
    const forged = await rd.page.evaluate(async (tok) => (await fetch('/v1/watches/web/restart',
      { method: 'POST', headers: { Authorization: 'Bearer ' + tok } })).status, reader);
    check(forged === 403, 'a forged POST by a reader is 403, got ' + forged);
    await shot(rd.page, 'overview-reader');
    await rd.page.goto(url + '/#/watch/web');
    await rd.page.waitForSelector('body[data-rendered=watch]', { timeout: T });
    check(!(await rd.page.$('#out-stdout')) && (await rd.page.$$('button[data-action]')).length === 0,
      'a reader\'s watch page has no output and no actions');

    // The form: a bad value shows its file:line beside the field; a good one runs.
    await page.goto(url + '/#/new');
    await page.waitForSelector('body[data-rendered=new]', { timeout: T });
    await page.waitForFunction(() => document.querySelector('#discovery').textContent.length > 0, { timeout: T });
    console.log('discovery: ' + await page.$eval('#discovery', e => e.textContent));
    await page.type('#f-name', 'formy');
    await page.type('#f-start', '/bin/sleep 10301');
    await page.$eval('details[data-key=restart]', d => { d.open = true; });
    await page.type('#f-restart_limit', 'abc');
    await page.select('#probe-kind', 'http');
    await page.click('#probe-add');
    await page.type('#f-probes_1__url', 'ftp://127.0.0.1/');
    await page.click('#check');
    await page.waitForSelector('[data-key="probes[1].url"] .field-error', { timeout: T });
    const perr = await page.$eval('[data-key="probes[1].url"] .field-error', e => e.textContent);
    check(/formy\.lua:\d+: http\.url: .*not an http/.test(perr), 'the probe\'s error beside its field: ' + perr);
    await page.waitForSelector('[data-key="restart.limit"] .field-error', { timeout: T });
    const err = await page.$eval('[data-key="restart.limit"] .field-error', e => e.textContent);
    check(/formy\.lua:\d+: .*restart\.limit.*integer/.test(err), 'the error beside the field has file:line: ' + err);
    check((await page.$eval('#lua', e => e.textContent)).includes('limit = "abc"'), 'the generated Lua is shown');
    await shot(page, 'form-error');
    await page.click('fieldset[data-key="probes[1]"] button');  // remove probe
    await page.$eval('#f-restart_limit', e => { e.value = ''; });
    await page.type('#f-restart_limit', '3');
    await page.click('#write');
    await page.waitForFunction(() => document.querySelector('#form-status').textContent.includes('written and loaded'), { timeout: T });
    check(!(await page.$('.field-error')), 'no error left after a good write');
    await shot(page, 'form-written');
    // A second write from the same form replaces its watch (not a second declaration).
    await page.$eval('#form-status', e => { e.textContent = ''; });
    await page.type('#f-description', 'made by the form');
    await page.click('#write');
    await page.waitForFunction(() => document.querySelector('#form-status').textContent.includes('written and loaded'), { timeout: T });
    const file0 = fs.readFileSync(path.join(process.env.RULES_DIR, 'formy.lua'), 'utf8');
    check((file0.match(/watch "formy"/g) || []).length === 1 && file0.includes('made by the form'), 'one watch in the file: ' + file0);
    // Someone edits the file while the form is open: the form's write is refused, the file kept.
    const file = path.join(process.env.RULES_DIR, 'formy.lua');
    const edited = fs.readFileSync(file, 'utf8') + '-- edited by hand\n';
    fs.writeFileSync(file, edited);
    await page.type('#f-description', ', more');
    await page.click('#write');
    await page.waitForFunction(() => document.querySelector('#form-status').textContent.includes('changed on disk'), { timeout: T });
    check(fs.readFileSync(file, 'utf8') === edited, 'the file as the other writer left it');
    await shot(page, 'form-stale');
    await page.goto(url + '/#/');
    await page.waitForSelector('body[data-rendered=overview]', { timeout: T });
    await waitRow(page, 'formy', 'running');
    await shot(page, 'overview-after-form');

    // A phone: the overview still reads.
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await shot(page, 'overview-phone');

    // The browser logs every 4xx answer (the refusals the test asks for): not script errors.
    const errors = [...op.errors, ...rd.errors].filter(e => !/^Failed to load resource: the server responded with a status of 4\d\d/.test(e));
    check(errors.length === 0, 'no script errors: ' + errors.join('; '));
    console.log('PASS');
  } finally {
    await browser.close();
  }
})().catch(e => { console.error(e && e.stack || e); process.exit(1); });
