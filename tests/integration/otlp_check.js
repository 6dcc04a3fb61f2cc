// tests/integration/otlp_check.js - checks OTLP/JSON lines (one
// ExportTraceServiceRequest per line) against the OpenTelemetry proto files
// with protobufjs, independently of sluice's encoder:
//
//   node otlp_check.js NODE_MODULES PROTO_DIR FILE [EXPECTED_SPANS]
//
// For every line:
//  1. strict shape: every key is a field of its message (lowerCamelCase, as
//     the protobuf JSON mapping names them), every value has its field's JSON
//     type: 64-bit integers as decimal strings, enums as integers of the
//     enum, doubles as numbers or "NaN"/"Infinity"/"-Infinity", bytes ids as
//     lowercase hex of the right length (OTLP's exception to base64), at most
//     one member of a oneof;
//  2. Type.fromObject (ids turned into bytes) + verify;
//  3. a round trip: encode to protobuf binary, decode, toObject (longs and
//     64-bit as strings, enums as numbers, non-finite doubles as strings,
//     ids back to hex), deep-equal to the line as parsed: a field the
//     decoder dropped or read differently fails here;
//  4. ids non-zero, end >= start; and, when the span count is given (a
//     whole file), that count and a parentSpanId that names a span of the
//     file (or the driver's one remote parent).
// Prints "ok: L lines, S spans" or the first problem, exit 1.
'use strict';
const path = require('path');
const fs = require('fs');
const util = require('util');

const [nm, protoDir, file, expected] = process.argv.slice(2);
const protobuf = require(path.join(nm, 'protobufjs'));

function die(msg) {
  console.error('otlp_check: ' + msg);
  process.exit(1);
}

const root = new protobuf.Root();
root.resolvePath = (origin, target) => path.join(protoDir, target);
root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
root.resolveAll();
const Req = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

const ID_LEN = { traceId: 32, spanId: 16, parentSpanId: 16 };
const LONGS = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INTS = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);

function checkValue(field, v, where) {
  const t = field.type;
  if (field.resolvedType instanceof protobuf.Type) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) die(`${where}: object expected`);
    checkMessage(field.resolvedType, v, where);
  } else if (field.resolvedType instanceof protobuf.Enum) {
    if (!Number.isInteger(v)) die(`${where}: enum as an integer expected, got ${JSON.stringify(v)}`);
    if (!Object.values(field.resolvedType.values).includes(v)) die(`${where}: ${v} is not a value of ${t}`);
  } else if (LONGS.has(t)) {
    if (typeof v !== 'string' || !/^-?[0-9]+$/.test(v)) die(`${where}: 64-bit integer as a decimal string expected, got ${JSON.stringify(v)}`);
  } else if (INTS.has(t)) {
    if (!Number.isInteger(v)) die(`${where}: integer expected`);
  } else if (t === 'double' || t === 'float') {
    if (typeof v !== 'number' && !['NaN', 'Infinity', '-Infinity'].includes(v)) die(`${where}: number expected`);
  } else if (t === 'bool') {
    if (typeof v !== 'boolean') die(`${where}: boolean expected`);
  } else if (t === 'string') {
    if (typeof v !== 'string') die(`${where}: string expected`);
  } else if (t === 'bytes') {
    const len = ID_LEN[field.name];
    if (!len) die(`${where}: a bytes field other than an id`);
    if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${len}}$`).test(v)) die(`${where}: ${len} lowercase hex digits expected, got ${JSON.stringify(v)}`);
  } else {
    die(`${where}: unexpected type ${t}`);
  }
}

function checkMessage(type, obj, where) {
  for (const [k, v] of Object.entries(obj)) {
    const f = type.fields[k];
    if (!f) die(`${where}: "${k}" is not a field of ${type.fullName}`);
    if (f.repeated) {
      if (!Array.isArray(v)) die(`${where}.${k}: array expected`);
      v.forEach((e, i) => checkValue(f, e, `${where}.${k}[${i}]`));
    } else {
      checkValue(f, v, `${where}.${k}`);
    }
  }
  for (const o of type.oneofsArray) {
    const set = o.fieldsArray.filter((f) => f.name in obj);
    if (set.length > 1) die(`${where}: oneof ${o.name} has ${set.map((f) => f.name)}`);
  }
}

// ids: hex <-> bytes, everywhere in the tree
function mapIds(x, fn) {
  if (Array.isArray(x)) return x.map((e) => mapIds(e, fn));
  if (x && typeof x === 'object' && !(x instanceof Uint8Array)) {
    const o = {};
    for (const [k, v] of Object.entries(x)) o[k] = k in ID_LEN ? fn(v) : mapIds(v, fn);
    return o;
  }
  return x;
}

const text = fs.readFileSync(file, 'utf8');
if (!text.endsWith('\n')) die('the file does not end with a newline');
const lines = text.slice(0, -1).split('\n');
const spanIds = new Set();
const parents = [];
let spans = 0;
lines.forEach((line, i) => {
  const where = `line ${i + 1}`;
  let json;
  try {
    json = JSON.parse(line);
  } catch (e) {
    die(`${where}: not JSON: ${e.message}`);
  }
  checkMessage(Req, json, where);
  const withBytes = mapIds(json, (h) => Buffer.from(h, 'hex'));
  const msg = Req.fromObject(withBytes);
  const err = Req.verify(msg);
  if (err) die(`${where}: verify: ${err}`);
  const back = Req.toObject(Req.decode(Req.encode(msg).finish()), {
    longs: String, enums: Number, bytes: Buffer, json: true, defaults: false,
  });
  const hex = mapIds(back, (b) => Buffer.from(b).toString('hex'));
  if (!util.isDeepStrictEqual(hex, json)) {
    die(`${where}: the round trip through protobuf differs:\n  line: ${JSON.stringify(json)}\n  back: ${JSON.stringify(hex)}`);
  }
  for (const rs of json.resourceSpans || []) {
    const attrs = (rs.resource && rs.resource.attributes) || [];
    if (!attrs.some((a) => a.key === 'service.name' && a.value && typeof a.value.stringValue === 'string'))
      die(`${where}: no service.name resource attribute`);
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        spans++;
        if (/^0+$/.test(s.traceId) || /^0+$/.test(s.spanId)) die(`${where}: an all-zero id`);
        if (BigInt(s.endTimeUnixNano) < BigInt(s.startTimeUnixNano)) die(`${where}: ends before it starts`);
        spanIds.add(s.traceId + s.spanId);
        if (s.parentSpanId) parents.push([s.traceId + s.parentSpanId, where]);
      }
    }
  }
});
// a parent is a span of the file, or a remote one (not in the file): both
// are allowed; what must hold is that a child of a local span names it
// exactly (same trace id), which spanIds keyed by trace+span checks for
// every parent that is in the file under another trace id.
const remoteOk = (key) => key.endsWith('00f067aa0ba902b7');
if (expected !== undefined) // a whole file: every local parent is in it
  for (const [key, where] of parents)
    if (!spanIds.has(key) && !remoteOk(key)) die(`${where}: parent ${key} is not a span of the file`);
if (expected !== undefined && spans !== Number(expected)) die(`${spans} spans, ${expected} expected`);
console.log(`ok: ${lines.length} lines, ${spans} spans`);
