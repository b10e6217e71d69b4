// Sends COUNT records through winston-loki, in protobuf with snappy (its default when the
// snappy module loads, which this script insists on).
// usage: node winston_loki.mjs BASE_URL SERVICE COUNT [API_KEY]
import { createRequire } from 'node:module';
import winston from 'winston';
import LokiTransport from 'winston-loki';

const require = createRequire(import.meta.url);
require('snappy');

const [base, service, count, key] = process.argv.slice(2);
let failed = null;
const transport = new LokiTransport({
  host: base,
  labels: { service_name: service, env: 'test' },
  basicAuth: key ? `shipper:${key}` : undefined,
  batching: true,
  interval: 0.2,
  onConnectionError: (error) => { failed = error; },
});
const logger = winston.createLogger({ transports: [transport] });
for (let number = 0; number < Number(count); number++) {
  logger.info(`winston line ${number}`, { labels: { shard: String(number % 3) } });
}
await transport.flush();
// The batcher's timer would keep the process alive.
await transport.close();
if (failed) {
  console.error(`push failed: ${failed}`);
  process.exit(1);
}
