// tests/integration/server_kafkajs.js - kafkajs (pinned in kafkajs/package.json)
// against `sluice broker serve`, driven by server_kafkajs.sh: a transactional
// producer commits one transaction and aborts another; then, with a third
// transaction of the first producer open, a second producer with the same
// transactional id begins one (its InitProducerId bumps the epoch and aborts
// the open transaction) and the first one's next send or commit must fail with
// a fencing error; the second commits one more transaction. Then a
// read_committed group consumer (kafkajs's default isolation) reads the topic
// from the beginning. Prints one line per step and one per record consumed;
// the shell script checks them, and what kcat's read_committed and
// read_uncommitted readers see. Usage: node server_kafkajs.js MODULE_DIR HOST:PORT TOPIC
'use strict';
const [moduleDir, broker, topic] = process.argv.slice(2);
const { Kafka, logLevel } = require(moduleDir + '/kafkajs');

const kafka = new Kafka({
  clientId: 'sluice-kafkajs-test',
  brokers: [broker],
  logLevel: logLevel.NOTHING,
  retry: { retries: 2, initialRetryTime: 50 },
});

function producer() {
  return kafka.producer({ transactionalId: 'js-tx', idempotent: true, maxInFlightRequests: 1 });
}

function msgs(prefix, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push({ key: `${prefix}-k${i}`, value: `${prefix}-${i}` });
  return out;
}

async function main() {
  const p1 = producer();
  await p1.connect();
  let t = await p1.transaction();
  await t.send({ topic, messages: msgs('committed', 6) });
  await t.commit();
  console.log('committed one transaction');

  t = await p1.transaction();
  await t.send({ topic, messages: msgs('aborted', 6) });
  await t.abort();
  console.log('aborted one transaction');

  t = await p1.transaction();
  await t.send({ topic, messages: msgs('fenced', 6) });
  const p2 = producer();
  await p2.connect();
  // kafkajs sends the transactional InitProducerId at a producer's first
  // transaction(), not at connect(): this is where p1 is fenced.
  const t2 = await p2.transaction();
  let fenced = null;
  try {
    await t.send({ topic, messages: msgs('fenced-late', 6) });
    await t.commit();
  } catch (e) {
    fenced = e;
  }
  if (!fenced) throw new Error('the first producer was not fenced by the second');
  const type = fenced.type || (fenced.originalError && fenced.originalError.type) || fenced.name;
  if (!/PRODUCER_FENCED|INVALID_PRODUCER_EPOCH/.test(String(type)))
    throw new Error(`the first producer failed, but not fenced: ${type}: ${fenced.message}`);
  console.log(`first producer fenced: ${type}`);

  await t2.send({ topic, messages: msgs('second', 3) });
  await t2.commit();
  console.log('second producer committed');
  await p1.disconnect().catch(() => {});
  await p2.disconnect();

  // A read_committed group consumer (kafkajs's default isolation) from the
  // beginning: it must get exactly the 9 committed records. It stops once it
  // has 9 and prints every record it got (more, if any, arrive with them).
  const consumer = kafka.consumer({ groupId: 'js-reader', readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  let guard;
  await new Promise((resolve, reject) => {
    guard = setTimeout(() => reject(new Error(`consumer got only ${seen.length} records`)), 60000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          seen.push(message.value.toString());
          if (seen.length >= 9) resolve();
        },
      })
      .catch(reject);
  });
  clearTimeout(guard);
  await consumer.disconnect();
  for (const v of seen) console.log(`read_committed: ${v}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`kafkajs: ${e.type || e.name}: ${e.message}`);
    process.exit(1);
  },
);
