// Sends COUNT records with the OpenTelemetry JS SDK's OTLP/HTTP log exporter (JSON).
// usage: node otel_logs.mjs BASE_URL SERVICE COUNT [API_KEY]
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';

const [base, service, count, key] = process.argv.slice(2);
const exporter = new OTLPLogExporter({
  url: `${base}/v1/logs`,
  headers: key ? { Authorization: `Bearer ${key}` } : {},
});
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': service }),
  processors: [new BatchLogRecordProcessor({ exporter, maxExportBatchSize: 100 })],
});
const logger = provider.getLogger('shipper', '1.0.0');
for (let number = 0; number < Number(count); number++) {
  logger.emit({
    severityNumber: SeverityNumber.ERROR,
    severityText: 'ERROR',
    body: `js record ${number}`,
    attributes: { 'order.id': number, retried: number % 2 === 0 },
  });
}
await provider.forceFlush();
await provider.shutdown();
