// The contract test of docs/openapi.yaml (CTest: contract_openapi). Real tools read the file, and a live
// cairnd is held to it:
//   1. `redocly lint` (recommended-strict, redocly.yaml) and swagger-parser's validation pass, and the file
//      has no `nullable` (OpenAPI 3.1 ignores it: a value that may be null says so in its type);
//   2. self-checks that these checks can fail: a deliberately wrong document fails the lint, and a null
//      where the file's schema does not allow one fails the schema validation;
//   3. a cairnd on a free loopback port with a throwaway data directory: every operation of the file is
//      driven with at least one success and one error case, and every answer's status must be declared
//      for the operation, its content type must be one the file declares for that status, and its JSON
//      body must validate against the declared schema (ajv, JSON Schema 2020-12, as OpenAPI 3.1 reads it);
//      every 405 names the path's methods in Allow; streams are checked for status, content type and their
//      first record;
//   4. it fails if an operation of the file was never exercised with both a 2xx and a 4xx answer.
// Usage: node contract.mjs --cairnd PATH [--spec docs/openapi.yaml]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const specPath = path.resolve(args.spec ?? path.join(here, '../../docs/openapi.yaml'));
const cairnd = args.cairnd;
if (!cairnd) fail('usage: node contract.mjs --cairnd PATH [--spec FILE]');

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19))
  fail(`Node.js ${process.versions.node} is too old for @redocly/cli (needs 20.19 or later)`);
if (!fs.existsSync(path.join(here, 'node_modules', '.package-lock.json')))
  fail(`${here}/node_modules is missing: run \`make deps\` (npm ci in tests/contract)`);

const { default: SwaggerParser } = await import('@apidevtools/swagger-parser');
const { default: Ajv2020 } = await import('ajv/dist/2020.js');
const { default: addFormats } = await import('ajv-formats');

let failures = 0;
let checks = 0;
function fail(msg) {
  console.error(`contract: ${msg}`);
  process.exit(1);
}
function problem(msg) {
  failures++;
  console.error(`FAIL ${msg}`);
}

// ------------------------------------------------------------------------------------------ 1. the file

function redoclyLint(file) {
  const r = spawnSync(process.execPath, [path.join(here, 'node_modules/@redocly/cli/bin/cli.js'), 'lint',
    '--config', path.join(here, 'redocly.yaml'), '--format', 'stylish', file], { encoding: 'utf8' });
  return { code: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

const lint = redoclyLint(specPath);
checks++;
if (lint.code !== 0) problem(`redocly lint ${specPath}:\n${lint.out}`);
try {
  await SwaggerParser.validate(specPath);
  checks++;
} catch (e) {
  problem(`swagger-parser: ${e.message}`);
}
const raw = await SwaggerParser.parse(specPath);
checks++;
if (!String(raw.openapi).startsWith('3.1.')) problem(`openapi: ${raw.openapi}; the file is read as OpenAPI 3.1 (nullable as type: [X, "null"])`);
const doc = await SwaggerParser.dereference(structuredClone(raw));
(function noNullable(node, where) {
  if (Array.isArray(node)) return node.forEach((v, i) => noNullable(v, `${where}/${i}`));
  if (node && typeof node === 'object')
    for (const [k, v] of Object.entries(node)) {
      if (k === 'nullable') problem(`${where}: 'nullable' means nothing in OpenAPI 3.1; write type: [X, "null"]`);
      noNullable(v, `${where}/${k}`);
    }
})(raw, '#');
checks++;

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
// OpenAPI's own formats beyond JSON Schema's.
for (const f of ['int32', 'int64']) ajv.addFormat(f, { type: 'number', validate: (n) => Number.isInteger(n) });
for (const f of ['float', 'double']) ajv.addFormat(f, { type: 'number', validate: () => true });
ajv.addFormat('byte', /^[A-Za-z0-9+/]*={0,2}$/);
// Ajv honours OpenAPI 3.0's `nullable` as an extension; OpenAPI 3.1 has no such keyword, so it is taken
// out before compiling: only a type or anyOf that names "null" lets a value be null.
function withoutNullable(node) {
  if (Array.isArray(node)) return node.map(withoutNullable);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).filter(([k]) => k !== 'nullable').map(([k, v]) => [k, withoutNullable(v)]));
}
const compiled = new Map();
function validator(schema) {
  if (!compiled.has(schema)) {
    try {
      compiled.set(schema, ajv.compile(withoutNullable(schema)));
    } catch (e) {
      problem(`a schema of the file does not compile: ${e.message}`);
      compiled.set(schema, Object.assign(() => false, { errors: [{ message: e.message }] }));
    }
  }
  return compiled.get(schema);
}

// ------------------------------------------------------------------------------------------ 2. self-checks

{
  // A 3.0 document that says nullable without a type beside it: the reading that the lint must refuse.
  const wrong = path.join(os.tmpdir(), `cairn-contract-wrong-${process.pid}.yaml`);
  fs.writeFileSync(wrong, `openapi: 3.0.3
info: {title: wrong, version: "1", description: deliberately wrong}
servers: [{url: "http://127.0.0.1"}]
security: []
tags: [{name: t, description: t}]
paths:
  /x:
    get:
      tags: [t]
      operationId: x
      summary: x
      responses:
        "200":
          description: x
          content:
            application/json:
              schema:
                type: object
                properties:
                  f: {allOf: [{$ref: "#/components/schemas/F"}], nullable: true}
        "400": {description: x}
components:
  schemas:
    F: {type: object, properties: {a: {type: string}}}
`);
  const r = redoclyLint(wrong);
  fs.unlinkSync(wrong);
  checks++;
  if (r.code === 0) problem('self-check: redocly lint passed a document with nullable and no type beside it');
  // A null where the file's schema does not allow one must be refused, and one where it does accepted.
  const ev = doc.components.schemas.Event;
  const good = { position: 0, stream: 's', revision: 0, id: crypto.randomUUID(), type: 't',
    recorded_at: '2026-12-07T00:00:00.000000000Z', content_type: 'application/json', metadata: {}, data: {} };
  checks++;
  if (!validator(ev)(good)) problem(`self-check: a good Event is refused: ${ajv.errorsText(validator(ev).errors)}`);
  if (validator(ev)({ ...good, position: null })) problem('self-check: Event.position null was accepted');
  if (validator(ev)({ ...good, stream: null })) problem('self-check: Event.stream null was accepted');
  const page = doc.components.schemas.Page;
  if (!validator(page)({ events: [good], next: null })) problem('self-check: Page.next null was refused');
  const status = doc.components.schemas.ProjectionStatus.properties;
  if (!validator(status.fault)(null)) problem('self-check: ProjectionStatus.fault null was refused');
  if (validator(status.fault)({ message: 'x' })) problem('self-check: a ProjectionFault without position was accepted');
  if (validator(status.name)(null)) problem('self-check: ProjectionStatus.name null was accepted');
}

// ------------------------------------------------------------------------------------------ 3. a live cairnd

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-contract-'));
const adminKey = `cairn_contract_${crypto.randomBytes(12).toString('hex')}`;
fs.writeFileSync(path.join(dataDir, 'master.key'), crypto.randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
const server = spawn(cairnd, ['--data', path.join(dataDir, 'data'), '--http', '127.0.0.1:0', '--durability', 'none',
  '--key-store', path.join(dataDir, 'keys'), '--master-key-file', path.join(dataDir, 'master.key'), '--workers', '8'],
{ env: { ...process.env, CAIRN_BOOTSTRAP_ADMIN_KEY: adminKey }, stdio: ['ignore', 'pipe', 'inherit'] });
let finished = false;
function cleanup() {
  if (!server.killed) server.kill('SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
const port = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) resolve(Number(m[1]));
  });
  server.on('exit', (code) => { if (!finished) reject(new Error(`cairnd exited (${code}) before listening:\n${out}`)); });
}).catch((e) => fail(e.message));

// One request on its own connection. stream: read the head and the first record, then hang up.
function request({ method = 'GET', url, key, body, contentType, headers = {}, stream = false }) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (key) h.Authorization = `Bearer ${key}`;
    let payload;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['Content-Type'] = contentType ?? 'application/json';
      h['Content-Length'] = Buffer.byteLength(payload);
    } else if (contentType) {
      h['Content-Type'] = contentType;
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers: h, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      const isStream = stream && res.statusCode === 200;
      res.on('data', (d) => {
        text += d;
        if (isStream && firstRecord(res.headers['content-type'], text) !== undefined) {
          res.destroy();
          resolve({ status: res.statusCode, headers: res.headers, text });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('close', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

// The first event of an SSE or NDJSON body as parsed JSON; null for a stream that says it is connected
// but has no event yet; undefined while not even that has arrived.
function firstRecord(contentType, text) {
  if ((contentType ?? '').startsWith('text/event-stream')) {
    const m = text.match(/(?:^|\n)data: (.*)\n\n/);
    return m ? parseOrText(m[1]) : undefined;
  }
  const nl = text.indexOf('\n');
  if (nl < 0) return undefined;
  const line = text.slice(0, nl);
  return line === '' ? null : parseOrText(line);
}
// A record that is not JSON stays text: the Event schema then refuses it, and says where.
function parseOrText(s) {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

// The operations of the file, by path template and method.
const operations = [];
for (const [tmpl, item] of Object.entries(doc.paths))
  for (const m of ['get', 'post', 'put', 'patch', 'delete'])
    if (item[m]) operations.push({ tmpl, method: m.toUpperCase(), op: item[m],
      re: new RegExp('^' + tmpl.replace(/\{[^}]+\}/g, '[^/]+') + '$') });
for (const o of operations) if (!o.op.operationId) problem(`${o.method} ${o.tmpl}: no operationId`);
const ids = operations.map((o) => o.op.operationId);
for (const id of new Set(ids)) if (ids.filter((x) => x === id).length > 1) problem(`operationId ${id} is used twice`);
const seen = new Map(operations.map((o) => [o.op.operationId, new Set()]));
function operationOf(method, url) {
  const p = url.split('?')[0];
  // A literal path wins over a template (/v1/ai/export before /v1/ai/{x}); the file has no such overlap
  // today, but the most specific match is the right one.
  const matches = operations.filter((o) => o.method === method && o.re.test(p));
  matches.sort((a, b) => (a.tmpl.match(/\{/g) ?? []).length - (b.tmpl.match(/\{/g) ?? []).length);
  return matches[0];
}
function pathMethods(url) {
  const p = url.split('?')[0];
  const tmpl = Object.keys(doc.paths).find((t) => new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$').test(p));
  return tmpl ? operations.filter((o) => o.tmpl === tmpl).map((o) => o.method) : [];
}

// Sends one request and holds the answer to the file. expect: the status this case is meant to produce.
async function check(name, expect, req) {
  checks++;
  const method = req.method ?? 'GET';
  const r = await request(req);
  const where = `${name}: ${method} ${req.url}`;
  if (r.status !== expect) {
    problem(`${where}: status ${r.status}, the case expects ${expect}: ${r.text.slice(0, 400)}`);
    return r;
  }
  // A 405 belongs to the path: any operation of the path declares it.
  let o = operationOf(method, req.url);
  if (!o && r.status === 405) o = operations.find((x) => x.re.test(req.url.split('?')[0]));
  if (!o) {
    problem(`${where}: no operation of the file matches`);
    return r;
  }
  seen.get(o.op.operationId).add(r.status);
  const declared = o.op.responses[String(r.status)] ?? o.op.responses[`${String(r.status)[0]}XX`] ?? o.op.responses.default;
  if (!declared) {
    problem(`${where}: answered ${r.status}, which ${o.op.operationId} does not declare (${Object.keys(o.op.responses)})`);
    return r;
  }
  for (const [h, spec] of Object.entries(declared.headers ?? {}))
    if (spec.required && r.headers[h.toLowerCase()] === undefined) problem(`${where}: no ${h} header, which the file requires`);
  if (r.status === 405) {
    const allow = (r.headers.allow ?? '').split(',').map((s) => s.trim()).filter(Boolean).sort();
    const want = pathMethods(req.url).sort();
    if (allow.join() !== want.join()) problem(`${where}: Allow '${r.headers.allow}', the file's methods are ${want}`);
  }
  const ct = (r.headers['content-type'] ?? '').split(';')[0].trim();
  const content = declared.content ?? {};
  if (!Object.keys(content).length) {
    if (r.text) problem(`${where}: a body where the file declares none`);
    return r;
  }
  const media = content[ct];
  if (!media) {
    problem(`${where}: Content-Type '${r.headers['content-type']}', the file declares ${Object.keys(content)}`);
    return r;
  }
  let body = r.text;
  if (ct === 'application/json') {
    try {
      body = JSON.parse(r.text);
    } catch (e) {
      problem(`${where}: not JSON: ${e.message}`);
      return r;
    }
  }
  const schema = media.schema ?? {};
  const v = validator(schema);
  if (!v(body)) problem(`${where}: the ${r.status} body does not match the file's schema: ${ajv.errorsText(v.errors, { separator: '; ' })}\n  ${r.text.slice(0, 600)}`);
  if (req.stream && r.status === 200 && (ct === 'text/event-stream' || ct === 'application/x-ndjson')) {
    const rec = firstRecord(ct, r.text);
    if (req.expectEvent) {
      if (!rec) problem(`${where}: the stream's first record is not an event: ${r.text.slice(0, 200)}`);
      else if (!validator(doc.components.schemas.Event)(rec))
        problem(`${where}: a streamed event does not match Event: ${ajv.errorsText(validator(doc.components.schemas.Event).errors)}`);
    }
  }
  r.json = ct === 'application/json' ? body : undefined;
  return r;
}

const A = adminKey;
const post = (url, key, body, extra = {}) => ({ method: 'POST', url, key, body, ...extra });
const del = (url, key) => ({ method: 'DELETE', url, key });

// ---- keys (the other roles, a scoped key)
const mk = async (role, streams) => (await check('createKey', 201, post('/v1/keys', A, { role, name: `contract ${role}`, ...(streams ? { streams } : {}) }))).json;
const writer = await mk('writer');
const reader = await mk('reader');
const scoped = await mk('reader', ['team-a-']);
const W = writer?.key, R = reader?.key, S = scoped?.key;
if (!W || !R || !S) fail('could not create the keys the cases need');
await check('createKey', 400, post('/v1/keys', A, { role: 'boss' }));
await check('createKey', 415, post('/v1/keys', A, '{"role":"reader"}', { contentType: 'text/plain' }));
await check('createKey', 403, post('/v1/keys', W, { role: 'reader' }));
await check('listKeys', 200, { url: '/v1/keys', key: A });
await check('listKeys', 403, { url: '/v1/keys', key: R });
await check('listKeys', 401, { url: '/v1/keys' });
const victim = await mk('reader');
await check('revokeKey', 200, del(`/v1/keys/${victim.id}`, A));
await check('revokeKey', 404, del('/v1/keys/key_000000000000', A));
const admins = (await request({ url: '/v1/keys', key: A })).text;
const adminId = JSON.parse(admins).keys.find((k) => k.role === 'admin').id;
await check('revokeKey', 409, del(`/v1/keys/${adminId}`, A));
await check('listKeys', 200, { url: '/v1/keys', key: A });  // with a revoked key: revoked_at is a time

// ---- health, metrics, stats
await check('health', 200, { url: '/health' });
await check('health', 405, { method: 'POST', url: '/health', body: {} });
await check('metrics', 200, { url: '/metrics', key: R });
await check('metrics', 401, { url: '/metrics' });
await check('metrics', 403, { url: '/metrics', key: S });
await check('stats', 200, { url: '/v1/stats', key: R });
await check('stats', 403, { url: '/v1/stats', key: S });
await check('verifyLog', 200, post('/v1/verify', A, {}));
await check('verifyLog', 403, post('/v1/verify', R, {}));
await check('verifyLog', 401, post('/v1/verify', undefined, {}));

// ---- appends and reads
const corr = `corr-${crypto.randomUUID()}`;
const question = crypto.randomUUID();
const first = await check('appendToStream', 201, post('/v1/streams/conv-1', W, {
  expected_revision: 'no_stream',
  events: [{ id: question, type: 'ai.question.asked', data: { question: 'Which refund policy applies?' },
    metadata: { correlation_id: corr, actor: { kind: 'human', id: 'user-7' } } }],
}));
await check('appendToStream', 200, post('/v1/streams/conv-1', W, {
  expected_revision: 'no_stream',
  events: [{ id: question, type: 'ai.question.asked', data: { question: 'Which refund policy applies?' },
    metadata: { correlation_id: corr, actor: { kind: 'human', id: 'user-7' } } }],
}));
await check('appendToStream', 409, post('/v1/streams/conv-1', W, { expected_revision: 7, events: [{ type: 't', data: {} }] }));
await check('appendToStream', 400, post('/v1/streams/conv-1', W, { events: [{ data: {} }] }));
await check('appendToStream', 400, post('/v1/streams/conv-1', W, '{not json'));
await check('appendToStream', 403, post('/v1/streams/conv-1', R, { events: [{ type: 't', data: {} }] }));
await check('appendToStream', 403, post('/v1/streams/conv-1', S, { events: [{ type: 't', data: {} }] }));
await check('appendToStream', 401, post('/v1/streams/conv-1', undefined, { events: [{ type: 't', data: {} }] }));
await check('appendToStream', 415, post('/v1/streams/conv-1', W, '{"events":[]}', { contentType: 'text/plain' }));
await check('appendToStream', 422, post('/v1/streams/conv-1', W, { events: [{ type: 'human.decision.recorded', data: { proposal_id: 'p-none', outcome: 'accepted', final_value: 1 } }] }));
await check('appendToStream', 201, post('/v1/streams/bin-1', W, { events: [
  { type: 'blob', content_type: 'application/octet-stream', data: Buffer.from('bytes').toString('base64') },
  { type: 'scalar', data: 42 }] }));

// The ledger's flow: two proposals, one edited (a delta) and one rejected (delta null), in one transaction.
const p1 = `p-${crypto.randomUUID()}`, p2 = `p-${crypto.randomUUID()}`;
const proposal = (id, value) => ({ type: 'ai.proposal.made', data: { proposal_id: id, proposal_kind: 'draft',
  skill: 'refund_policy_answer', 'gen_ai.request.model': 'm-1', input: { question: 'Which refund policy applies?' },
  proposed_value: value }, metadata: { correlation_id: corr, causation_id: question, actor: { kind: 'ai_agent', id: 'bot' } } });
const decisionId = crypto.randomUUID();
const tx = await check('appendTransaction', 201, post('/v1/transactions', W, { appends: [
  { stream: 'conv-1', expected_revision: 0, events: [proposal(p1, 'Full refund within 30 days'), proposal(p2, 'No refund')] },
  { stream: 'decisions-1', events: [
    { id: decisionId, type: 'human.decision.recorded', data: { proposal_id: p1, outcome: 'edited', final_value: 'Refund within 30 days, minus shipping' },
      metadata: { correlation_id: corr, actor: { kind: 'human', id: 'agent-3' } } },
    { type: 'human.decision.recorded', data: { proposal_id: p2, outcome: 'rejected' },
      metadata: { correlation_id: corr, actor: { kind: 'human', id: 'agent-3' } } }] }] }));
await check('appendTransaction', 409, post('/v1/transactions', W, { appends: [{ stream: 'conv-1', expected_revision: 0, events: [{ type: 't', data: {} }] }] }));
await check('appendTransaction', 400, post('/v1/transactions', W, { appends: 'no' }));
await check('appendTransaction', 403, post('/v1/transactions', S, { appends: [{ stream: 'conv-1', events: [{ type: 't', data: {} }] }] }));
await check('appendTransaction', 415, post('/v1/transactions', W, '{}', { contentType: 'text/plain' }));
await check('appendTransaction', 422, post('/v1/transactions', W, { appends: [{ stream: 'x-1', events: [{ type: 'human.decision.recorded', data: { proposal_id: p1, outcome: 'bogus' } }] }] }));
await check('appendTransaction', 201, post('/v1/transactions', W, { appends: [
  { stream: 'team-a-1', events: [{ id: '0190f7d4-8a2b-7c3d-9e4f-00000000000a', type: 't', data: { n: 1 } }] }] }));
await check('appendTransaction', 200, post('/v1/transactions', W, { appends: [
  { stream: 'team-a-1', events: [{ id: '0190f7d4-8a2b-7c3d-9e4f-00000000000a', type: 't', data: { n: 1 } }] }] }));
// Personal data: the email is sealed under the subject's key.
await check('appendToStream', 201, post('/v1/streams/customer-1', W, { events: [{ type: 'customer.registered',
  data: { email: 'ana@example.org', plan: 'pro' }, metadata: { privacy: { subject: 'user-1', personal: ['/email'] } } }] }));

await check('listStreams', 200, { url: '/v1/streams?limit=2', key: R });
await check('listStreams', 200, { url: '/v1/streams', key: S });
await check('listStreams', 400, { url: '/v1/streams?limit=x', key: R });
await check('listStreams', 401, { url: '/v1/streams' });
await check('readStream', 200, { url: '/v1/streams/conv-1', key: R });
await check('readStream', 200, { url: '/v1/streams/bin-1?direction=backward&limit=1', key: R });
await check('readStream', 404, { url: '/v1/streams/nope', key: R });
await check('readStream', 403, { url: '/v1/streams/conv-1', key: S });
await check('readStream', 400, { url: '/v1/streams/conv-1?from=x', key: R });
await check('readAll', 200, { url: '/v1/events', key: R });
await check('readAll', 200, { url: '/v1/events?type=t&limit=1', key: S });
await check('readAll', 400, { url: '/v1/events?direction=sideways', key: R });
await check('readAll', 401, { url: '/v1/events', key: 'cairn_wrong' });
await check('readEvent', 200, { url: `/v1/events/${question}`, key: R });
await check('readEvent', 400, { url: '/v1/events/not-a-uuid', key: R });
await check('readEvent', 404, { url: `/v1/events/${crypto.randomUUID()}`, key: R });
await check('readEvent', 404, { url: `/v1/events/${question}`, key: S });
await check('readPosition', 200, { url: '/v1/positions/0', key: R });
await check('readPosition', 400, { url: '/v1/positions/x', key: R });
await check('readPosition', 404, { url: '/v1/positions/999999', key: R });
await check('readPosition', 401, { url: '/v1/positions/0' });

// ---- subscriptions (status, content type, the first event; then the connection is closed)
await check('subscribeAll', 200, { url: '/v1/subscribe', key: R, stream: true, expectEvent: true });
await check('subscribeAll', 200, { url: '/v1/subscribe?type_prefix=ai.', key: R, stream: true, expectEvent: true, headers: { Accept: 'application/x-ndjson' } });
await check('subscribeAll', 400, { url: '/v1/subscribe?from=x', key: R });
await check('subscribeAll', 400, { url: '/v1/subscribe', key: R, headers: { 'Last-Event-ID': 'x' } });
await check('subscribeAll', 401, { url: '/v1/subscribe' });
await check('subscribeStream', 200, { url: '/v1/streams/conv-1/subscribe', key: R, stream: true, expectEvent: true });
await check('subscribeStream', 200, { url: '/v1/streams/conv-1/subscribe?from=1', key: R, stream: true, expectEvent: true, headers: { Accept: 'application/x-ndjson' } });
await check('subscribeStream', 400, { url: '/v1/streams/conv-1/subscribe?from=x', key: R });
await check('subscribeStream', 403, { url: '/v1/streams/conv-1/subscribe', key: S });
await check('subscribeStream', 401, { url: '/v1/streams/conv-1/subscribe' });

// ---- projections
const head = JSON.parse((await request({ url: '/health' })).text).head_position;
const counter = 'return function(s, e)\n  s.count = (s.count or 0) + 1\nend\n';
await check('defineProjection', 201, post('/v1/projections', A, { name: 'counter', lua: counter, partition: 'stream' }));
await check('defineProjection', 200, post('/v1/projections', A, { name: 'counter', lua: counter, partition: 'stream' }));
await check('defineProjection', 400, post('/v1/projections', A, { name: 'bad', lua: 'this is not lua' }));
await check('defineProjection', 409, post('/v1/projections', A, { name: 'counter', lua: 'return function(s, e) end\n' }));
await check('defineProjection', 403, post('/v1/projections', R, { name: 'x', lua: counter }));
await check('defineProjection', 415, post('/v1/projections', A, '{}', { contentType: 'text/plain' }));
await check('defineProjection', 201, post('/v1/projections', A, { name: 'boom', lua: 'return function(s, e)\n  error("boom")\nend\n' }));
await check('listProjections', 200, { url: '/v1/projections', key: R });
await check('listProjections', 403, { url: '/v1/projections', key: S });
await check('getProjectionState', 200, { url: `/v1/projections/counter/state?wait_for=${head - 1}&timeout_ms=30000`, key: R });
await check('getProjectionState', 200, { url: '/v1/projections/counter/state?key=conv-1', key: R });
await check('getProjectionState', 200, { url: '/v1/projections/counter/state?as_of=0', key: R });
await check('getProjectionState', 400, { url: '/v1/projections/counter/state?as_of=999999', key: R });
await check('getProjectionState', 404, { url: '/v1/projections/nope/state', key: R });
await check('getProjectionState', 409, { url: `/v1/projections/boom/state?wait_for=${head - 1}&timeout_ms=30000`, key: R });
// boom has faulted now: its status carries a ProjectionFault, counter's a null fault.
await check('getProjection', 200, { url: '/v1/projections/boom', key: R });
await check('getProjection', 200, { url: '/v1/projections/counter', key: R });
await check('getProjection', 404, { url: '/v1/projections/nope', key: R });
await check('getProjection', 400, { url: '/v1/projections/counter?version=x', key: R });
await check('listProjections', 200, { url: '/v1/projections', key: R });
await check('listProjectionPartitions', 200, { url: '/v1/projections/counter/partitions?limit=2', key: R });
await check('listProjectionPartitions', 400, { url: '/v1/projections/counter/partitions?limit=0', key: R });
await check('listProjectionPartitions', 404, { url: '/v1/projections/nope/partitions', key: R });
await check('getProjectionDigest', 200, { url: '/v1/projections/counter/digest', key: R });
await check('getProjectionDigest', 404, { url: '/v1/projections/nope/digest', key: R });
await check('verifyProjection', 200, post('/v1/projections/counter/verify', A));
await check('verifyProjection', 404, post('/v1/projections/nope/verify', A));
await check('verifyProjection', 403, post('/v1/projections/counter/verify', R));
await check('rebuildProjection', 202, post('/v1/projections/counter/rebuild', A));
await check('rebuildProjection', 404, post('/v1/projections/nope/rebuild', A));
await check('getProjectionRebuild', 200, { url: '/v1/projections/counter/rebuild', key: R });
await check('getProjectionRebuild', 404, { url: '/v1/projections/nope/rebuild', key: R });
await check('listProjectionVersions', 200, { url: '/v1/projections/counter/versions', key: R });
await check('listProjectionVersions', 404, { url: '/v1/projections/nope/versions', key: R });
await check('deployProjectionVersion', 201, post('/v1/projections/two/versions', A, { version: 1, lua: counter }));
await check('deployProjectionVersion', 201, post('/v1/projections/two/versions', A, { lua: counter, description: 'v2' }));
await check('deployProjectionVersion', 400, post('/v1/projections/two/versions', A, { name: 'other', lua: counter }));
await check('deployProjectionVersion', 404, post('/v1/projections/nope/versions', A, { lua: counter }));
await check('getProjectionVersion', 200, { url: '/v1/projections/two/versions/1', key: R });
await check('getProjectionVersion', 400, { url: '/v1/projections/two/versions/0', key: R });
await check('getProjectionVersion', 404, { url: '/v1/projections/two/versions/9', key: R });
await check('activateProjectionVersion', 200, post('/v1/projections/two/versions/2/activate', A));
await check('activateProjectionVersion', 404, post('/v1/projections/two/versions/9/activate', A));
await check('dropProjectionVersion', 409, del('/v1/projections/two/versions/2', A));
await check('dropProjectionVersion', 200, del('/v1/projections/two/versions/1', A));
await check('dropProjectionVersion', 400, del('/v1/projections/$streams/versions/1', A));

// ---- the AI ledger
await check('ledgerWhy', 200, { url: `/v1/why/${decisionId}`, key: R });
await check('ledgerWhy', 200, { url: `/v1/why/${question}`, key: R });
await check('ledgerWhy', 400, { url: '/v1/why/not-a-uuid', key: R });
await check('ledgerWhy', 404, { url: `/v1/why/${crypto.randomUUID()}`, key: R });
await check('ledgerWhy', 403, { url: `/v1/why/${decisionId}`, key: S });
await check('ledgerCorrelation', 200, { url: `/v1/correlations/${corr}`, key: R });
await check('ledgerCorrelation', 200, { url: `/v1/correlations/${corr}?as_of=${head - 1}`, key: R });
await check('ledgerCorrelation', 404, { url: '/v1/correlations/nothing-has-this', key: R });
await check('ledgerCorrelation', 400, { url: `/v1/correlations/${corr}?as_of=999999`, key: R });
await check('ledgerRates', 200, { url: '/v1/ai/rates', key: R });
await check('ledgerRates', 200, { url: '/v1/ai/rates?by=model&by=skill', key: R });
await check('ledgerRates', 400, { url: '/v1/ai/rates?by=colour', key: R });
await check('ledgerRates', 403, { url: '/v1/ai/rates', key: S });
await check('ledgerExport', 200, { url: '/v1/ai/export?format=sft', key: R, stream: true });
await check('ledgerExport', 400, { url: '/v1/ai/export', key: R });
await check('ledgerExport', 400, { url: '/v1/ai/export?format=sft&colour=red', key: R });
await check('ledgerExport', 403, { url: '/v1/ai/export?format=sft', key: S });
await check('ledgerExportManifest', 200, { url: '/v1/ai/export/manifest?format=preference', key: R });
await check('ledgerExportManifest', 400, { url: '/v1/ai/export/manifest?format=nope', key: R });

// ---- privacy
await check('subjectReport', 200, { url: '/v1/privacy/subjects/user-1/report', key: A });
await check('forgetSubject', 201, post('/v1/privacy/subjects/user-1/forget', A, { reason: 'contract test', actor: { kind: 'human', id: 'dpo' } }));
await check('forgetSubject', 200, post('/v1/privacy/subjects/user-1/forget', A, { reason: 'again' }));
await check('forgetSubject', 400, post('/v1/privacy/subjects/user-1/forget', A, {}));
await check('forgetSubject', 404, post('/v1/privacy/subjects/nobody/forget', A, { reason: 'x' }));
await check('forgetSubject', 403, post('/v1/privacy/subjects/user-1/forget', W, { reason: 'x' }));
await check('forgetSubject', 415, post('/v1/privacy/subjects/user-1/forget', A, '{"reason":"x"}', { contentType: 'text/plain' }));
await check('purgeForgotten', 200, post('/v1/privacy/purge', A, {}));
await check('purgeForgotten', 400, post('/v1/privacy/purge', A, { colour: 'red' }));
await check('purgeForgotten', 415, post('/v1/privacy/purge', A, '{}', { contentType: 'text/plain' }));
await check('purgeForgotten', 403, post('/v1/privacy/purge', S, {}));
await check('subjectReport', 200, { url: '/v1/privacy/subjects/user-1/report', key: A });
await check('subjectReport', 404, { url: '/v1/privacy/subjects/nobody/report', key: A });
await check('subjectReport', 403, { url: '/v1/privacy/subjects/user-1/report', key: R });
await check('readStream', 200, { url: '/v1/streams/customer-1', key: R });  // a redacted part reads back

// ---- 405 with Allow, for every path of the file: a method the path does not list
const concrete = (tmpl) => tmpl.replace('{stream}', 'conv-1').replace('{id}', question).replace('{position}', '0')
  .replace('{name}', 'counter').replace('{version}', '1').replace('{event_id}', question)
  .replace('{correlation_id}', corr).replace('{subject}', 'user-1');
for (const tmpl of Object.keys(doc.paths)) {
  const have = pathMethods(concrete(tmpl));
  const method = ['PUT', 'PATCH', 'DELETE', 'POST', 'GET'].find((m) => !have.includes(m));
  await check(`405 ${tmpl}`, 405, { method, url: concrete(tmpl), key: A, body: method === 'GET' ? undefined : {} });
}

// ------------------------------------------------------------------------------------------ 4. coverage

for (const o of operations) {
  const statuses = [...seen.get(o.op.operationId)];
  if (!statuses.some((s) => s >= 200 && s < 300)) problem(`${o.op.operationId} (${o.method} ${o.tmpl}): no success case ran`);
  // 405 counts as the error case only for an operation that declares no other 4xx (GET /health).
  const other4xx = Object.keys(o.op.responses).some((c) => c.startsWith('4') && c !== '405');
  if (!statuses.some((s) => s >= 400 && s < 500 && (s !== 405 || !other4xx)))
    problem(`${o.op.operationId} (${o.method} ${o.tmpl}): no error case ran${other4xx ? ' (besides 405)' : ''}`);
}

finished = true;
server.kill('SIGTERM');
await new Promise((resolve) => server.on('exit', resolve));
console.log(`contract: ${operations.length} operations of ${path.basename(specPath)}, ${checks} checks`);
console.log(`${checks - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
