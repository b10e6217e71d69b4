"""Sends COUNT records through python-logging-loki's LokiHandler (JSON push) with labels.

usage: loki_logging.py BASE_URL SERVICE COUNT [API_KEY]
"""

import logging
import sys

import logging_loki

base, service, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
auth = ("shipper", sys.argv[4]) if len(sys.argv) > 4 else None
handler = logging_loki.LokiHandler(
    url=f"{base}/loki/api/v1/push", tags={"app": service, "env": "test"}, auth=auth, version="1"
)
# The handler reports a failed push on stderr and goes on; a failure must fail the script.
handler.handleError = lambda record: sys.exit(f"push failed for {record.getMessage()!r}")
logger = logging.getLogger("loki-shipper")
logger.propagate = False
logger.addHandler(handler)
logger.setLevel(logging.INFO)
for number in range(count):
    logger.info("line %d", number, extra={"tags": {"order": str(number % 5)}})
