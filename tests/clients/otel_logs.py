"""Sends COUNT records through Python's logging module with the OpenTelemetry SDK's
LoggingHandler and OTLP/HTTP exporter (protobuf, gzip), inside a span, then prints the
span's trace and span ids as JSON.

usage: otel_logs.py BASE_URL SERVICE COUNT [API_KEY]
"""

import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

base, service, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = {"Authorization": f"Bearer {sys.argv[4]}"} if len(sys.argv) > 4 else None

resource = Resource.create({"service.name": service, "deployment.environment": "test"})
exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs", compression=Compression.Gzip, headers=headers)
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=200))
logger = logging.getLogger("shipper")
logger.propagate = False
logger.setLevel(logging.DEBUG)
logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))

tracer = TracerProvider(resource=resource).get_tracer("shipper")
with tracer.start_as_current_span("batch") as span:
    for number in range(count):
        level = logging.WARNING if number % 2 else logging.INFO
        logger.log(level, "record %d of %d", number, count, extra={"order.id": number})
    context = span.get_span_context()

if not provider.force_flush(30_000):
    sys.exit("the exporter did not flush")
provider.shutdown()
print(json.dumps({"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}))
