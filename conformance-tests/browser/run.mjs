// Drives the DPO console in headless Chromium as a person would: signs in
// through the agency's real provider, searches the ledger, opens an entry,
// restricts a disclosure under s.45 and sees the subject access report
// withhold it, exports a search and reviews a
// break-glass share from the review queue; checks that a
// person without an oversight role is refused; runs axe on every page and
// fails on serious or critical violations (WCAG 2.2 AA rules) and on any
// Content-Security-Policy violation. Screenshots go to SCREENSHOTS.
//
// Run by gateway/tests/console_browser.rs, which starts the console and
// the provider and passes:
//   CONSOLE_URL, DPO_LOGIN, DPO_PASSWORD, WORKER_LOGIN, WORKER_PASSWORD,
//   PERSON_ID, and optionally CHROMIUM and SCREENSHOTS.

import { readFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
const here = path.dirname(fileURLToPath(import.meta.url));

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const base = env('CONSOLE_URL');
const shots = env('SCREENSHOTS', path.join(here, 'screenshots'));
const person = env('PERSON_ID');
await mkdir(shots, { recursive: true });

const failures = [];
const fail = (what) => { failures.push(what); console.error(`FAIL ${what}`); };
const check = (ok, what) => { if (ok) console.log(`ok   ${what}`); else fail(what); };

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  args: ['--no-sandbox'],
});

async function newPage() {
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) fail(`CSP violation on ${page.url()}: ${m.text()}`);
  });
  return page;
}

// axe through the DevTools protocol, which the page's CSP does not govern,
// so the console's own policy stays as strict as in production.
async function audit(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
  }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) {
    fail(`axe ${name}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }
  check(bad.length === 0, `axe ${name}: no serious or critical violations (${result.violations.length} minor)`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function signIn(page, login, password) {
  await page.goto(`${base}/console/login`);
  await page.locator('button[name="issuer"]').first().click();
  try {
    await page.waitForSelector('#login-form', { timeout: 10000 });
  } catch (e) {
    throw new Error(`no provider login form at ${page.url()}: ${(await page.textContent('body'))?.replace(/\s+/g, ' ').slice(0, 800)}`);
  }
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#login-submit')]);
  await page.waitForLoadState('networkidle');
}

try {
  const page = await newPage();
  await page.goto(`${base}/console/login`);
  await audit(page, 'sign-in');
  await shot(page, 'sign-in');

  await signIn(page, env('DPO_LOGIN'), env('DPO_PASSWORD'));
  check(new URL(page.url()).pathname === '/console/', `the DPO lands on the dashboard (${page.url()})`);
  check((await page.textContent('#name'))?.trim().length > 0, 'the dashboard names the DPO');
  check(/Consistent|no signed tree head yet/.test(await page.textContent('#integrity') ?? ''), 'the dashboard shows the ledger integrity');
  check(await page.locator('svg.chart[role="img"] title').count() >= 2, 'the dashboard\'s charts are labelled images');
  const awaiting = (await page.textContent('#break-glass-count')) ?? '';
  check(/\b2\b break-glass shares await review/.test(awaiting), `the dashboard counts unreviewed break-glass shares (${awaiting.trim()})`);
  await audit(page, 'dashboard');
  await shot(page, 'dashboard');

  // Keyboard: the skip link is the first stop and is visible when focused.
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.classList.contains('skip')), 'the first Tab reaches the skip link');

  await page.goto(`${base}/console/entries`);
  await page.fill('#f-subject', person);
  await Promise.all([page.waitForLoadState('load'), page.click('#search')]);
  check(!page.url().includes(person), 'the person searched for is not in the address');
  const rows = await page.locator('table.entries tbody tr').count();
  check(rows > 0, `the search finds the person's entries (${rows})`);
  await audit(page, 'search');
  await shot(page, 'search');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const csv = await readFile(await download.path(), 'utf8');
  check(download.suggestedFilename().endsWith('.csv'), `the export is a CSV file (${download.suggestedFilename()})`);
  check(csv.startsWith('entry_id,sequence,recorded_at'), 'the CSV has its header');
  check(csv.trim().split('\n').length === rows + 1, 'the CSV holds every matching entry');

  await Promise.all([page.waitForLoadState('load'), page.locator('table.entries tbody a').first().click()]);
  const verdict = (await page.textContent('#verdict')) ?? '';
  check(verdict.startsWith('Verified: included in tree of size'), `the entry's proof is verified (${verdict})`);
  await audit(page, 'entry');
  await shot(page, 'entry');

  // The review queue: break-glass shares first while unreviewed; one is
  // reviewed with a note and moves below the unreviewed ones.
  await page.goto(`${base}/console/review?kind=break-glass`);
  const queued = page.locator('#queue tbody tr');
  check(await queued.count() === 2, `the queue lists both break-glass shares (${await queued.count()})`);
  check(await page.locator('#queue .badge.pending').count() === 2, 'both are badged unreviewed');
  await audit(page, 'review-queue');
  await shot(page, 'review-queue');
  const first = await queued.first().getAttribute('data-entry');
  await Promise.all([page.waitForLoadState('load'), queued.first().locator('a').click()]);
  await page.fill('#review-note', 'Checked with the duty manager; emergency access was justified.');
  await audit(page, 'entry-review');
  await Promise.all([page.waitForLoadState('load'), page.click('#mark-reviewed')]);
  check((await page.textContent('#review-done'))?.includes(first), 'the queue confirms the review once it is recorded');
  await page.selectOption('#q-kind', 'break-glass');
  await Promise.all([page.waitForLoadState('load'), page.click('#queue-filter')]);
  const order = await page.locator('#queue tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-entry')));
  check(order.length === 2 && order[1] === first, 'the reviewed share moves below the unreviewed one');
  check(await page.locator(`#queue tr[data-entry="${first}"] .badge.done`).count() === 1, 'the reviewed share is badged reviewed');
  await audit(page, 'review-queue-after');
  await shot(page, 'review-queue-after');
  await page.goto(`${base}/console/entries/${first}`);
  check((await page.textContent('#reviews'))?.includes('emergency access was justified'), 'the entry shows its review');

  await page.goto(`${base}/console/agreements`);
  check(await page.locator('#agreements tbody tr').count() > 0, 'the agreement register lists the policy\'s agreements');
  await audit(page, 'agreements');
  await shot(page, 'agreements');

  const report = async () => {
    await page.goto(`${base}/console/subject`);
    await page.fill('#person', person);
    await Promise.all([page.waitForLoadState('load'), page.click('#report')]);
    return page.locator('#disclosures tbody tr').count();
  };
  const reported = await report();
  check(!page.url().includes(person), 'the report\'s person is not in the address');
  check(reported > 1, `the subject access report lists disclosures (${reported})`);
  check(await page.locator('#withheld').count() === 0, 'nothing is withheld before a restriction');

  // s.45: one disclosure is restricted for a live investigation; the
  // report withholds it from the subject's copy and tells the DPO so.
  const restricted = await page.locator('#disclosures tbody a').first().textContent();
  await Promise.all([page.waitForLoadState('load'), page.locator('#disclosures tbody a').first().click()]);
  check((await page.textContent('#restriction-status'))?.startsWith('Not restricted'), 'the entry starts unrestricted');
  const until = new Date(Date.now() + 30 * 86400000).toISOString().slice(0, 10);
  await page.fill('#restrict-until', until);
  await page.fill('#restrict-reason', 'Live investigation OP-HERON: disclosure would alert the suspect.');
  await Promise.all([page.waitForLoadState('load'), page.click('#restrict')]);
  const status = (await page.textContent('#restriction-status')) ?? '';
  check(status.includes(`Restricted: withheld from subject access reports until ${until}`), `the entry shows its restriction (${status.trim()})`);
  check(status.includes('OP-HERON') && status.includes('Metropolitan Police Service'), 'the restriction names why and by whom');
  await audit(page, 'entry-restricted');
  await shot(page, 'entry-restricted');

  const after45 = await report();
  check(after45 === reported - 1, `the report withholds the restricted disclosure (${after45} of ${reported})`);
  check(!((await page.textContent('#disclosures')) ?? '').includes(restricted.trim()), 'the subject\'s copy does not name the restricted entry');
  check(/\b1 disclosure withheld under s\.45/.test((await page.textContent('#withheld-h')) ?? ''), 'the DPO is told one disclosure is withheld');
  check(((await page.textContent('#withheld')) ?? '').includes('OP-HERON'), 'the DPO sees why it is withheld');
  await audit(page, 'subject-access-report');
  await shot(page, 'subject-access-report');
  await page.emulateMedia({ media: 'print' });
  check(!(await page.isVisible('header.site')), 'the printed report leaves out the console\'s header');
  check(!(await page.isVisible('#withheld')), 'the printed report leaves out what is withheld');
  await shot(page, 'subject-access-report-print');
  await page.emulateMedia({ media: 'screen' });

  const worker = await newPage();
  await signIn(worker, env('WORKER_LOGIN'), env('WORKER_PASSWORD'));
  const refusal = (await worker.textContent('#error')) ?? '';
  check(/none of the roles/.test(refusal), `a person without a console role is refused (${refusal.trim()})`);
  const after = await worker.goto(`${base}/console/entries`);
  check(after.status() === 401, 'the refused person has no session');
  await audit(worker, 'refused');
  await shot(worker, 'refused');
} catch (e) {
  fail(`the walk-through stopped: ${e.stack ?? e}`);
} finally {
  await browser.close();
}

if (failures.length > 0) {
  console.error(`${failures.length} failure(s)`);
  process.exit(1);
}
console.log('all browser checks passed');
