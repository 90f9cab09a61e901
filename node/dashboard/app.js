'use strict';
const POLL_MS = 2000;
const SPARK_SAMPLES = 30;
const QUERY_FETCH_MAX = 50;
const ROWS_MAX = 200;
// Severity thresholds: a peer's row turns amber, then red, past these.
// Disconnected for minutes is a restart or a network blip; for an hour, a
// site that needs a person.
const DOWN_WARN_S = 5 * 60;
const DOWN_BAD_S = 60 * 60;
// Entries behind, one direction and lane: a few are a batch in transit.
const BEHIND_WARN = 1000;
const BEHIND_BAD = 100000;

const rates = new Map();
const queryCache = new Map();
const siteNames = new Map();  // site id -> name, from the membership log via /v1/status
const lateBySite = new Map();  // site id -> SAEs past their deadline, from /v1/saes
let queryTotal = 0;
let queriesAvailable = true;
let lastOk = 0;
// The session's CSRF token, kept by the sign-in page in this origin's
// storage: every request sends it as X-CSRF-Token, which a page or server on
// another port cannot read, so the session cookie alone is worth nothing.
const csrfToken = window.localStorage.getItem('ts_csrf') || '';

class AuthError extends Error {}

function byId(id) { return document.getElementById(id); }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids) {
    if (k !== null && k !== undefined) e.append(k);
  }
  return e;
}

function badge(text, kind) { return el('span', {class: 'badge ' + kind, text: text}); }

// Entries of this peer refused by a rule of the rule book: the origin is
// flagged until the node restarts; the title names the rules.
function refusedBadge(byRule) {
  if (byRule === null || typeof byRule !== 'object') return null;
  const rules = Object.keys(byRule).filter(r => num(byRule[r]) !== null && byRule[r] > 0).sort();
  if (rules.length === 0) return null;
  const total = rules.reduce((n, r) => n + byRule[r], 0);
  const b = badge(fmtNum(total) + ' refused', 'bad');
  b.title = 'entries refused by rule: ' + rules.map(r => r + ' ' + byRule[r]).join(', ');
  b.setAttribute('data-refused', String(total));
  return b;
}

function num(v) { return typeof v === 'number' && isFinite(v) ? v : null; }
function str(v) { return typeof v === 'string' ? v : null; }
function pad(n) { return String(n).padStart(2, '0'); }
function fmtNum(v) { v = num(v); return v === null ? '-' : v.toLocaleString('en-US'); }

function fmtBytes(v) {
  v = num(v);
  if (v === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
}

function fmtDur(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + pad(m % 60) + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}

function fmtRate(r) { return r < 10 ? r.toFixed(1) : String(Math.round(r)); }

// Times carry a zone (Z or +HH:MM) and show as 'YYYY-MM-DD HH:MM UTC', seconds
// cut off (a deadline never shows later than it is).  A time without a zone
// cannot be placed and shows as written.
function hasZone(s) { return /(Z|[+-][0-9][0-9]:[0-9][0-9])$/.test(s); }

function fmtUtc(iso) {
  if (str(iso) === null || iso === '') return '-';
  if (!hasZone(iso)) return iso + ' (no zone)';
  const d = new Date(iso);
  if (isNaN(d.getTime())) return iso;
  return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate()) + ' ' +
    pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ' UTC';
}

function timeCell(cls, iso, missing) {
  if (str(iso) === null) return el('td', {class: cls, text: missing});
  return el('td', {class: cls, 'data-iso': iso, title: iso, text: fmtUtc(iso)});
}

async function getJson(path) {
  const r = await fetch(path, {credentials: 'same-origin', cache: 'no-store',
                               headers: {'Accept': 'application/json', 'X-CSRF-Token': csrfToken}});
  if (r.status === 401 || r.status === 403) throw new AuthError('HTTP ' + r.status);
  // Not found: an endpoint an older node lacks, or a record gone since listed.
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(path + ' answered HTTP ' + r.status);
  return r.json();
}

// ---- sites ----------------------------------------------------------------

function updateRates(peers, now) {
  const seen = new Set();
  for (const p of peers) {
    seen.add(p.id);
    const recv = num(p.entries_received), sent = num(p.entries_sent);
    const r = rates.get(p.id);
    if (r === undefined) {
      rates.set(p.id, {t: now, recv: recv, sent: sent, samples: []});
      continue;
    }
    const dt = (now - r.t) / 1000;
    if (dt > 0 && recv !== null && sent !== null && r.recv !== null && r.sent !== null) {
      const din = recv - r.recv, dout = sent - r.sent;
      if (din < 0 || dout < 0) {
        r.samples = [];  // counters went down: the node restarted
      } else {
        r.samples.push({rin: din / dt, rout: dout / dt});
        if (r.samples.length > SPARK_SAMPLES) r.samples.shift();
      }
    }
    r.t = now; r.recv = recv; r.sent = sent;
  }
  for (const id of [...rates.keys()]) {
    if (!seen.has(id)) rates.delete(id);
  }
}

function throughputCell(id) {
  const r = rates.get(id);
  const samples = r === undefined ? [] : r.samples;
  const td = el('td', {class: 'throughput'});
  const box = el('span', {class: 'spark'});
  const max = Math.max(1, ...samples.map(s => s.rin + s.rout));
  for (let i = 0; i < SPARK_SAMPLES; i++) {
    const s = samples[i - (SPARK_SAMPLES - samples.length)];
    const bar = el('i');
    if (s === undefined) {
      bar.className = 'none';
    } else if (s.rin + s.rout === 0) {
      bar.className = 'zero';
    } else {
      bar.style.height = Math.max(8, Math.round(100 * (s.rin + s.rout) / max)) + '%';
    }
    box.append(bar);
  }
  td.append(box);
  if (samples.length > 0) {
    const last = samples[samples.length - 1];
    box.title = 'entries per second between refreshes; highest ' + fmtRate(max);
    td.append(el('span', {class: 'rate', text: fmtRate(last.rin) + ' in, ' + fmtRate(last.rout) + ' out'}));
  } else {
    td.append(el('span', {class: 'rate', text: 'measuring'}));
  }
  return td;
}

function ageOf(p, now) {
  const a = num(p.last_seen_age_s);
  if (a !== null) return a;
  const t = str(p.last_seen) === null ? NaN : Date.parse(p.last_seen);
  return isNaN(t) ? null : Math.max(0, (now - t) / 1000);
}

// 'bad', 'warn' or '' for a value against its amber and red thresholds.
function level(v, warnAt, badAt) {
  return v === null ? '' : v > badAt ? 'bad' : v > warnAt ? 'warn' : '';
}

function lagCell(cls, v, connected) {
  const n = num(v);
  let sev = '';
  if (connected && n !== null && n > 0) sev = ' lag ' + (level(n, BEHIND_WARN, BEHIND_BAD) || 'some');
  return el('td', {class: 'num ' + cls + sev, text: fmtNum(v)});
}

function behindMost(p) {
  return Math.max(0, ...[p.behind_send_safety, p.behind_send_bulk, p.behind_recv_safety, p.behind_recv_bulk]
    .map(v => num(v) === null ? 0 : v));
}

// The names /v1/status gives the peers (each site's member record), for every
// table that names a site.
function updateNames(status) {
  siteNames.clear();
  for (const p of Array.isArray(status.peers) ? status.peers : []) {
    if (p !== null && typeof p === 'object' && str(p.id) !== null && str(p.name) !== null && p.name !== '')
      siteNames.set(p.id, p.name);
  }
}

// 'St. Mary's, Boston (101)', or the bare id when the site has no name.
function siteLabel(id) {
  const name = siteNames.get(id);
  return name === undefined ? id : name + ' (' + id + ')';
}

// How a peer ranks in the sites table, problems first: revoked; then
// disconnected, longest first (never seen counts as longest); then connected
// and behind, most first; then with SAEs late, then in flight, most first;
// then the rest.  Ties go by id.  Returns [class, measure], worse class lower,
// worse measure higher.
function peerRank(p, now) {
  if (p.revoked === true) return [0, 0];
  if (p.connected !== true) { const age = ageOf(p, now); return [1, age === null ? Infinity : age]; }
  const behind = behindMost(p);
  if (behind > 0) return [2, behind];
  const late = lateBySite.get(p.id) || 0;
  if (late > 0) return [3, late];
  const inflight = num(p.saes_in_flight) || 0;
  if (inflight > 0) return [4, inflight];
  return [5, 0];
}

function peerOrder(now) {
  return (a, b) => {
    const ra = peerRank(a, now), rb = peerRank(b, now);
    if (ra[0] !== rb[0]) return ra[0] - rb[0];
    if (ra[1] !== rb[1]) return ra[1] < rb[1] ? 1 : -1;
    return a.id.localeCompare(b.id, 'en', {numeric: true});
  };
}

// The row's colour: the worst of revoked, how long disconnected, how far behind, SAEs late.
function peerSeverity(p, connected, age) {
  if (p.revoked === true) return 'bad';
  if (!connected) return age === null ? 'bad' : level(age, DOWN_WARN_S, DOWN_BAD_S);
  if ((lateBySite.get(p.id) || 0) > 0) return 'bad';
  return level(behindMost(p), BEHIND_WARN, BEHIND_BAD);
}

function renderSites(status, now) {
  const peers = (Array.isArray(status.peers) ? status.peers : [])
    .filter(p => p !== null && typeof p === 'object' && str(p.id) !== null);
  updateRates(peers, now);
  peers.sort(peerOrder(now));
  const rows = [];
  for (const p of peers.slice(0, ROWS_MAX)) {
    const connected = p.connected === true;
    const age = ageOf(p, now);
    const sev = peerSeverity(p, connected, age);
    const state = connected ? badge('connected', 'ok') : badge('disconnected', sev || 'off');
    const late = lateBySite.get(p.id) || 0;
    const saes = el('td', {class: 'num saes' + (late > 0 ? ' bad' : num(p.saes_in_flight) > 0 ? ' warn' : ''),
                           text: fmtNum(p.saes_in_flight)});
    if (late > 0) saes.append(' ', badge(late + ' late', 'bad'));
    rows.push(el('tr', {'data-peer': p.id, 'data-severity': sev || 'ok',
                        class: (connected ? 'up' : 'down') + (sev ? ' sev-' + sev : '')},
      el('td', {class: 'name'}, el('a', {href: '#site=' + encodeURIComponent(p.id), text: str(p.name) || p.id})),
      el('td', {class: 'id', text: p.id}),
      el('td', {class: 'role'}, str(p.role) || '-', p.revoked === true ? badge('revoked', 'bad') : null,
         refusedBadge(p.entries_refused)),
      el('td', {class: 'state'}, state),
      el('td', {class: 'last-seen' + (connected ? '' : ' ' + (sev || '')), 'data-iso': str(p.last_seen), title: str(p.last_seen) || 'never',
                text: age === null ? 'never' : fmtDur(age) + ' ago'}),
      lagCell('behind-send-safety', p.behind_send_safety, connected),
      lagCell('behind-send-bulk', p.behind_send_bulk, connected),
      lagCell('behind-recv-safety', p.behind_recv_safety, connected),
      lagCell('behind-recv-bulk', p.behind_recv_bulk, connected),
      throughputCell(p.id),
      saes));
  }
  byId('sites').tBodies[0].replaceChildren(...rows);
  byId('sites-empty').textContent = 'No peers known yet.';
  byId('sites-empty').hidden = rows.length > 0;
  byId('sites-note').textContent = peers.length > ROWS_MAX ? 'first ' + ROWS_MAX + ' of ' + peers.length : '';

  const sites = peers.filter(p => p.role === 'site');
  const counted = sites.length > 0 ? sites : peers;
  const up = counted.filter(p => p.connected === true).length;
  byId('n-sites').textContent = up + ' / ' + counted.length;
  byId('tile-sites').querySelector('.l').textContent = sites.length > 0 ? 'sites connected' : 'peers connected';
  // None connected is an outage, not a site to look into.
  const tile = counted.length > 0 && up === 0 ? ' bad' : up < counted.length ? ' warn' : '';
  byId('tile-sites').className = 'tile' + tile;
}

// ---- serious adverse events ------------------------------------------------

function saeRank(s) { return s.late === true ? 0 : s.at_risk === true ? 1 : s.acked === true ? 3 : 2; }
function deadlineMs(s) { const t = str(s.deadline) === null ? NaN : Date.parse(s.deadline); return isNaN(t) ? Infinity : t; }

// When the SAE reached the CRO: a hub's own stamp; at a site, when a hub
// acknowledged it (a site never sees the hub's stamp), so a row never says
// 'not yet' beside 'Acknowledged: yes'.
function receivedCell(s) {
  const t = str(s.received_time) !== null ? s.received_time : str(s.acked_time);
  if (t === null && s.acked === true) return el('td', {class: 'received', text: 'yes'});
  return timeCell('received', t, 'not yet');
}

// A paged list's note: the API sends 'next' when more remain than one page.
function moreNote(answer, shown) {
  return answer !== null && typeof answer === 'object' && str(answer.next) !== null
    ? 'first ' + shown + ' (more on the node: use the CLI for all)' : '';
}

function renderSaes(saes, status, now) {
  const totals = status.sae !== null && typeof status.sae === 'object' ? status.sae : null;
  const list = saes === null || !Array.isArray(saes.saes) ? null
    : saes.saes.filter(s => s !== null && typeof s === 'object' && str(s.id) !== null);
  lateBySite.clear();
  if (list === null) {
    byId('saes').tBodies[0].replaceChildren();
    byId('saes-empty').textContent = 'This node does not list SAEs (GET /v1/saes not available).';
    byId('saes-empty').hidden = false;
  } else {
    for (const s of list) {
      if (s.late === true && str(s.site) !== null) lateBySite.set(s.site, (lateBySite.get(s.site) || 0) + 1);
    }
    list.sort((a, b) => saeRank(a) - saeRank(b) || deadlineMs(a) - deadlineMs(b) || a.id.localeCompare(b.id));
    const rows = [];
    for (const s of list.slice(0, ROWS_MAX)) {
      const flag = s.late === true ? badge('LATE', 'bad') : s.at_risk === true ? badge('AT RISK', 'warn') : badge('on time', 'ok');
      const dl = deadlineMs(s);
      let left = '-';
      if (dl !== Infinity) left = dl >= now ? 'in ' + fmtDur((dl - now) / 1000) : 'passed ' + fmtDur((now - dl) / 1000) + ' ago';
      rows.push(el('tr', {'data-sae': s.id, class: s.late === true ? 'late' : s.at_risk === true ? 'risk' : null},
        el('td', {class: 'id', text: s.id}),
        el('td', {class: 'site', 'data-site': str(s.site), text: str(s.site) === null ? '-' : siteLabel(s.site)}),
        el('td', {class: 'term wrap', text: str(s.aeterm) || '-'}),
        timeCell('aware', s.aware_time, '-'),
        receivedCell(s),
        timeCell('deadline', s.deadline, '-'),
        el('td', {class: 'left', text: left}),
        el('td', {class: 'flag'}, flag),
        el('td', {class: 'acked'}, s.acked === true ? badge('yes', 'ok') : badge('no', s.late === true || s.at_risk === true ? 'bad' : 'off')),
        el('td', {class: 'num alarms', text: fmtNum(s.alarms)})));
    }
    byId('saes').tBodies[0].replaceChildren(...rows);
    byId('saes-empty').textContent = 'No serious adverse events.';
    byId('saes-empty').hidden = rows.length > 0;
    byId('sae-note').textContent = list.length > ROWS_MAX ? 'first ' + ROWS_MAX + ' of ' + list.length
      : moreNote(saes, list.length);
  }
  const count = (field, pred) => totals !== null && num(totals[field]) !== null ? totals[field]
    : list !== null ? list.filter(pred).length : null;
  const inflight = count('in_flight', s => s.acked !== true);
  const late = count('late', s => s.late === true);
  const risk = count('at_risk', s => s.at_risk === true);
  byId('n-inflight').textContent = fmtNum(inflight);
  byId('n-late').textContent = fmtNum(late);
  byId('n-risk').textContent = fmtNum(risk);
  byId('tile-inflight').className = 'tile' + (inflight > 0 ? ' warn' : '');
  byId('tile-late').className = 'tile' + (late > 0 ? ' bad' : '');
  byId('tile-risk').className = 'tile' + (risk > 0 ? ' warn' : '');
  return late;
}

// ---- conflicts and queries --------------------------------------------------

function renderConflicts(conflicts, status) {
  const list = conflicts === null || !Array.isArray(conflicts.conflicts) ? [] : conflicts.conflicts;
  const rows = [];
  for (const c of list.slice(0, ROWS_MAX)) {
    if (c === null || typeof c !== 'object') continue;
    const vals = el('ul', {class: 'vals'});
    for (const v of Array.isArray(c.values) ? c.values : []) {
      vals.append(el('li', {}, String(v.value), ' ',
        el('span', {class: 'sub-time', text: '(' + v.origin + ', ' + v.lane + '/' + v.seq + ', ' + fmtUtc(v.time) + ')'})));
    }
    rows.push(el('tr', {'data-conflict': c.type + '/' + c.id + '/' + c.field},
      el('td', {class: 'record', text: c.type + ' ' + c.id}),
      el('td', {class: 'field', text: String(c.field)}),
      el('td', {class: 'displayed wrap', text: String(c.displayed)}),
      el('td', {class: 'values wrap'}, vals)));
  }
  byId('conflicts').tBodies[0].replaceChildren(...rows);
  byId('conflicts-empty').textContent = 'No conflicts.';
  byId('conflicts-empty').hidden = rows.length > 0;
  byId('conflicts-note').textContent = list.length > ROWS_MAX ? 'first ' + ROWS_MAX + ' of ' + list.length
    : moreNote(conflicts, list.length);
  const open = num(status.conflicts) !== null ? status.conflicts : list.length;
  byId('n-conflicts').textContent = fmtNum(open);
  byId('tile-conflicts').className = 'tile' + (open > 0 ? ' warn' : '');
}

function fieldValue(fields, name) {
  const f = fields !== null && typeof fields === 'object' ? fields[name] : null;
  if (f === null || f === undefined || typeof f !== 'object') return null;
  return Array.isArray(f.value) ? f.value.join(' | ') : str(f.value);
}

function fetchedAt(id) { const q = queryCache.get(id); return q === undefined ? 0 : q.fetched; }

// Reads up to QUERY_FETCH_MAX query records per refresh: the new ones first,
// then those read longest ago, so a long list is covered over a few refreshes.
async function refreshQueries(list) {
  if (list === null) { queriesAvailable = false; return; }
  queriesAvailable = true;
  const ids = (Array.isArray(list.records) ? list.records : [])
    .map(r => r !== null && typeof r === 'object' ? str(r.id) : null).filter(id => id !== null);
  const known = new Set(ids);
  for (const id of [...queryCache.keys()]) {
    if (!known.has(id)) queryCache.delete(id);
  }
  queryTotal = ids.length;
  const pick = ids.slice().sort((a, b) => fetchedAt(a) - fetchedAt(b)).slice(0, QUERY_FETCH_MAX);
  await Promise.all(pick.map(async id => {
    const r = await getJson('/v1/records/query/' + encodeURI(id));
    if (r === null) queryCache.delete(id);
    else queryCache.set(id, {fetched: Date.now(), fields: r.fields});
  }));
}

function renderQueries() {
  const open = [];
  for (const [id, q] of queryCache) {
    const state = fieldValue(q.fields, 'state');
    if (state === 'closed' || state === 'cancelled') continue;
    open.push({id: id, state: state, target: fieldValue(q.fields, 'target'), text: fieldValue(q.fields, 'text')});
  }
  open.sort((a, b) => (a.state === 'open' ? 0 : 1) - (b.state === 'open' ? 0 : 1) || a.id.localeCompare(b.id, 'en', {numeric: true}));
  const rows = open.slice(0, ROWS_MAX).map(q => el('tr', {'data-query': q.id},
    el('td', {class: 'id', text: q.id}),
    el('td', {class: 'state'}, badge(q.state || 'unknown', q.state === 'open' ? 'warn' : 'off')),
    el('td', {class: 'target', text: q.target || '-'}),
    el('td', {class: 'text wrap', text: q.text || ''})));
  byId('queries').tBodies[0].replaceChildren(...rows);
  byId('queries-empty').textContent = queriesAvailable ? 'No open queries.' : 'This node does not list queries.';
  byId('queries-empty').hidden = rows.length > 0;
  let note = '';
  if (queryCache.size < queryTotal) note = 'read ' + queryCache.size + ' of ' + queryTotal + ' so far';
  else if (open.length > ROWS_MAX) note = 'first ' + ROWS_MAX + ' of ' + open.length;
  byId('queries-note').textContent = note;
  const n = open.filter(q => q.state === 'open').length;
  byId('n-queries').textContent = fmtNum(n);
  byId('tile-queries').className = 'tile' + (n > 0 ? ' warn' : '');
}

// ---- the per-site page (#site=ID) -----------------------------------------------

// Pages of a site's list read per refresh: a filtered page may hold few
// items (the API bounds the keys a page visits, not the items it keeps).
const SITE_PAGES_MAX = 5;

function siteOfHash() {
  const m = /^#site=(.+)$/.exec(window.location.hash);
  return m === null ? null : decodeURIComponent(m[1]);
}

// Up to SITE_PAGES_MAX pages of a paged list, joined; more: whether the
// node holds more than was read.
async function getPages(path, key) {
  const items = [];
  let after = null;
  for (let i = 0; i < SITE_PAGES_MAX; i++) {
    const r = await getJson(path + (after === null ? '' : '&after=' + encodeURIComponent(after)));
    if (r === null || !Array.isArray(r[key])) return {items: items, more: false, missing: r === null};
    items.push(...r[key].filter(x => x !== null && typeof x === 'object'));
    after = str(r.next);
    if (after === null) return {items: items, more: false, missing: false};
  }
  return {items: items, more: true, missing: false};
}

// The enrolled count of a site, when the status has an enrollment block
// naming it (a number, or an object with 'enrolled').
function enrolledOf(status, id) {
  const e = status !== null && typeof status === 'object' ? status.enrollment : null;
  if (e === null || typeof e !== 'object') return null;
  const bySite = e.sites !== null && typeof e.sites === 'object' ? e.sites : e;
  let v = Array.isArray(bySite) ? bySite.find(x => x !== null && typeof x === 'object' && x.site === id) : bySite[id];
  if (v !== null && typeof v === 'object') v = v.enrolled;
  return num(v);
}

function setFact(id, text, cls) {
  const e = byId(id);
  e.replaceChildren(text);
  e.className = 'v' + (cls ? ' ' + cls : '');
}

async function renderSitePage(id, status, now) {
  const q = encodeURIComponent(id);
  const [page, saes, conflicts, queries] = await Promise.all([
    getJson('/v1/sites/' + q), getPages('/v1/saes?site=' + q, 'saes'),
    getPages('/v1/conflicts?site=' + q, 'conflicts'), getPages('/v1/records?type=query&site=' + q, 'records')]);
  byId('site-page').hidden = false;
  document.body.classList.add('site-view');
  if (page === null || page.peer === null || typeof page.peer !== 'object') {
    byId('site-title').textContent = 'No site or peer ' + id + ' is known to this node';
    return;
  }
  const p = page.peer;
  byId('site-title').textContent = (str(p.name) ? p.name + ' (' + p.id + ')' : p.id) + ', ' + (str(p.role) || 'peer');
  const connected = p.connected === true;
  const age = ageOf(p, now);
  const sev = peerSeverity(p, connected, age);
  setFact('site-state', p.revoked === true ? badge('revoked', 'bad') : connected ? badge('connected', 'ok') : badge('disconnected', sev || 'off'));
  setFact('site-seen', age === null ? 'never' : fmtDur(age) + ' ago', connected ? '' : sev);
  byId('site-seen').title = str(p.last_seen) || 'never';
  setFact('site-down', str(p.last_disconnect) === null ? '-' : fmtUtc(p.last_disconnect));
  if (str(p.last_disconnect_reason) !== null) byId('site-down').append(el('span', {class: 'why', text: p.last_disconnect_reason}));
  setFact('site-lag', [p.behind_send_safety, p.behind_send_bulk, p.behind_recv_safety, p.behind_recv_bulk].map(fmtNum).join(' / '),
          connected ? level(behindMost(p), BEHIND_WARN, BEHIND_BAD) : '');
  setFact('site-inflight', fmtNum(p.saes_in_flight), num(p.saes_in_flight) > 0 ? 'warn' : '');
  setFact('site-nconflicts', fmtNum(p.conflicts), num(p.conflicts) > 0 ? 'warn' : '');
  const enrolled = enrolledOf(status, p.id);
  setFact('site-enrolled', enrolled === null ? 'not reported' : fmtNum(enrolled));

  const events = Array.isArray(page.events) ? page.events.slice().reverse() : [];
  byId('site-events').tBodies[0].replaceChildren(...events.map(e => el('tr', {'data-event': str(e.event)},
    timeCell('time', e.time, '-'),
    el('td', {class: 'event'}, badge(str(e.event) || '?', e.event === 'connected' ? 'ok' : 'off')),
    el('td', {class: 'reason wrap', text: str(e.reason) || ''}))));
  byId('site-events-empty').hidden = events.length > 0;
  byId('site-events-note').textContent = 'newest first, the last ' + fmtNum(page.events_max) + ' kept';

  saes.items.sort((a, b) => saeRank(a) - saeRank(b) || deadlineMs(a) - deadlineMs(b));
  byId('site-saes').tBodies[0].replaceChildren(...saes.items.slice(0, ROWS_MAX).map(s => el('tr',
    {'data-sae': str(s.id), class: s.late === true ? 'late' : s.at_risk === true ? 'risk' : null},
    el('td', {class: 'id', text: str(s.id) || '-'}),
    el('td', {class: 'term wrap', text: str(s.aeterm) || '-'}),
    timeCell('aware', s.aware_time, '-'),
    receivedCell(s),
    timeCell('deadline', s.deadline, '-'),
    el('td', {class: 'flag'}, s.late === true ? badge('LATE', 'bad') : s.at_risk === true ? badge('AT RISK', 'warn') : badge('on time', 'ok')),
    el('td', {class: 'acked'}, s.acked === true ? badge('yes', 'ok') : badge('no', s.late === true || s.at_risk === true ? 'bad' : 'off')))));
  byId('site-saes-empty').hidden = saes.items.length > 0;
  byId('site-saes-note').textContent = saes.more ? 'first ' + saes.items.length + ' read' : '';

  const crow = c => el('tr', {'data-conflict': c.type + '/' + c.id + '/' + c.field},
    el('td', {class: 'record', text: c.type + ' ' + c.id}),
    el('td', {class: 'field', text: String(c.field)}),
    el('td', {class: 'displayed wrap', text: String(c.displayed)}),
    el('td', {class: 'values wrap', text: (Array.isArray(c.values) ? c.values : []).map(v => String(v.value) + ' (' + v.origin + ')').join(', ')}));
  byId('site-conflicts').tBodies[0].replaceChildren(...conflicts.items.slice(0, ROWS_MAX).map(crow));
  byId('site-conflicts-empty').hidden = conflicts.items.length > 0;
  byId('site-conflicts-note').textContent = conflicts.more ? 'first ' + conflicts.items.length + ' read' : '';

  // The site's queries: each read once per refresh at most QUERY_FETCH_MAX.
  const ids = queries.items.map(r => str(r.id)).filter(x => x !== null).slice(0, QUERY_FETCH_MAX);
  const read = await Promise.all(ids.map(async qid => {
    const r = await getJson('/v1/records/query/' + encodeURIComponent(qid));
    return r === null ? null : {id: qid, state: fieldValue(r.fields, 'state'), target: fieldValue(r.fields, 'target'), text: fieldValue(r.fields, 'text')};
  }));
  const open = read.filter(x => x !== null && x.state !== 'closed' && x.state !== 'cancelled');
  byId('site-queries').tBodies[0].replaceChildren(...open.map(x => el('tr', {'data-query': x.id},
    el('td', {class: 'id', text: x.id}),
    el('td', {class: 'state'}, badge(x.state || 'unknown', x.state === 'open' ? 'warn' : 'off')),
    el('td', {class: 'target', text: x.target || '-'}),
    el('td', {class: 'text wrap', text: x.text || ''}))));
  byId('site-queries-empty').hidden = open.length > 0;
  byId('site-queries-note').textContent = queries.more || queries.items.length > ids.length
    ? 'first ' + ids.length + ' read' : '';
}

function leaveSitePage() {
  byId('site-page').hidden = true;
  document.body.classList.remove('site-view');
}

// ---- the node ---------------------------------------------------------------

function renderNode(status) {
  const node = str(status.node) || '?';
  byId('node').textContent = node;
  byId('role').textContent = str(status.role) || 'node';
  byId('trial').textContent = str(status.trial) || '?';
  byId('uptime').textContent = num(status.uptime_s) === null ? '?' : fmtDur(status.uptime_s);
  byId('n-disk').textContent = fmtBytes(status.store_bytes);
  byId('l-disk').textContent = 'store, ' + fmtBytes(status.disk_free_bytes) + ' disk free';
  const accepting = status.accepting_writes;
  byId('n-writes').textContent = accepting === false ? 'REFUSED' : accepting === true ? 'accepted' : '-';
  byId('tile-writes').className = 'tile' + (accepting === false ? ' bad' : '');
  byId('tile-disk').className = 'tile' + (accepting === false ? ' bad' : '');
  const hs = status.handshake_failures;
  if (hs !== null && typeof hs === 'object') {
    const parts = Object.keys(hs).sort().map(k => k + ' ' + fmtNum(hs[k]));
    byId('handshakes').textContent = 'Handshake failures since start: ' + parts.join(', ') + '.';
  }
  return node;
}

// Alarms the node raises that a person must act on: two nodes running one
// site's bundle (hub), this site revoked (site).
// Enrollment slots (/v1/status "enrollment"): subjects enrolled against the
// trial's cap, and per site enrolled of its slots in the tile's tooltip.
function renderEnrollment(status) {
  const en = status.enrollment !== null && typeof status.enrollment === 'object' ? status.enrollment : null;
  const enrolled = en !== null && num(en.enrolled) !== null ? en.enrolled : null;
  const cap = en !== null && num(en.cap) !== null ? en.cap : null;
  byId('n-enrolled').textContent = enrolled === null ? '-' : String(enrolled);
  byId('l-enrolled').textContent = cap === null ? 'enrolled (no cap set)' : 'enrolled of a cap of ' + cap;
  const sites = en !== null && Array.isArray(en.sites) ? en.sites : [];
  byId('tile-enrolled').title = sites.map((s) => 'site ' + str(s.site) + ': ' + num(s.enrolled) +
    (s.under_quota === true ? ' of ' + num(s.slots) + ' slots' : ' (no slots yet)')).join('\n');
  byId('tile-enrolled').className = 'tile' + (cap !== null && enrolled !== null && enrolled >= cap ? ' warn' : '');
}

function renderAlarms(status) {
  const lines = [];
  if (typeof status.revoked === 'string') {
    lines.push('REVOKED: ' + status.revoked + '. This node accepts no writes.');
  }
  const dups = Array.isArray(status.duplicate_identity) ? status.duplicate_identity : [];
  for (const d of dups) {
    if (d.alarm !== true) continue;
    lines.push('Two nodes run site ' + str(d.site) + '\'s bundle: ' + fmtNum(d.refused) +
      ' connections from ' + str(d.refused_addr) + ' refused (last ' + str(d.last) +
      '); the link from ' + str(d.kept_addr) + ' is kept. Stop one of them.');
  }
  const box = byId('alarms');
  box.replaceChildren(...lines.map(t => el('p', {text: t})));
  box.hidden = lines.length === 0;
}

function showProblem(text, link) {
  const b = byId('banner');
  b.replaceChildren(text);
  if (link) b.append(' ', el('a', {href: '/dashboard?signin', text: 'Sign in again'}), '.');
  b.hidden = false;
  document.body.classList.add('stale');
}

function clockUtc(ms) {
  const d = new Date(ms);
  return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + ' UTC';
}

async function refresh() {
  try {
    const [status, saes, conflicts, queries] = await Promise.all([
      getJson('/v1/status'), getJson('/v1/saes'), getJson('/v1/conflicts'),
      getJson('/v1/records?type=query')]);
    if (status === null) throw new Error('the node has no /v1/status');
    await refreshQueries(queries);
    const now = Date.now();
    const node = renderNode(status);
    renderAlarms(status);
    updateNames(status);
    const late = renderSaes(saes, status, now);
    renderSites(status, now);
    renderConflicts(conflicts, status);
    renderEnrollment(status);
    renderQueries();
    const site = siteOfHash();
    if (site !== null) await renderSitePage(site, status, now);
    else leaveSitePage();
    lastOk = now;
    byId('refreshed').textContent = clockUtc(now);
    byId('banner').hidden = true;
    document.body.classList.remove('stale');
    document.title = (late > 0 ? 'LATE SAE - ' : '') + node + ' - trialsync';
  } catch (e) {
    if (e instanceof AuthError) {
      showProblem('The node refused this page (' + e.message + '): the session has ended.', true);
    } else {
      showProblem('Cannot read the node: ' + e.message + '. ' +
        (lastOk > 0 ? 'Figures below are from ' + clockUtc(lastOk) + '.' : 'No figures yet.'), false);
    }
    document.title = 'NO DATA - trialsync';
  }
}

// Who is signed in.
async function loadSession() {
  const s = await getJson('/v1/session');
  if (s === null) return;
  const who = (str(s.name) ? s.name + ' (' : '(') + s.user + ', ' + s.role + ')';
  byId('who').textContent = who;
}

// Sign-out: the node forgets the session and clears the cookie; the
// sign-in page follows.
async function signOut() {
  const button = byId('signout');
  button.disabled = true;
  try {
    const r = await fetch('/v1/session/end', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken},
      body: '{}'});
    if (!r.ok) throw new Error('the node answered HTTP ' + r.status);
    window.localStorage.removeItem('ts_csrf');
    window.location.replace('/dashboard');
  } catch (e) {
    showProblem('Sign-out failed: ' + e.message + '.', false);
    button.disabled = false;
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}
byId('signout').addEventListener('click', signOut);
// A click anywhere on a site's row opens its page; the page follows the hash.
byId('sites').tBodies[0].addEventListener('click', e => {
  const row = e.target instanceof Element ? e.target.closest('tr[data-peer]') : null;
  if (row !== null) window.location.hash = 'site=' + encodeURIComponent(row.getAttribute('data-peer'));
});
window.addEventListener('hashchange', () => { refresh(); window.scrollTo(0, 0); });
loadSession().catch(e => showProblem(e instanceof AuthError ? 'The session has ended.' : 'Cannot read the session: ' + e.message + '.', e instanceof AuthError)).finally(loop);
