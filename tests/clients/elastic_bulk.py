"""Indexes COUNT documents with the official Elasticsearch client's helpers.bulk, then a
bulk with bad items, and prints what the client saw as JSON.

usage: elastic_bulk.py BASE_URL SERVICE COUNT [API_KEY]
"""

import datetime
import json
import sys

from elasticsearch import Elasticsearch, helpers

base, service, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
auth = {"api_key": ("shipper", sys.argv[4])} if len(sys.argv) > 4 else {}
client = Elasticsearch(f"{base}/es", request_timeout=30, **auth)

# The client's product check runs on this first call.
info = client.info()
now = datetime.datetime.now(datetime.timezone.utc)
documents = (
    {
        "_index": "logs-app",
        "_id": f"doc-{number}",
        "_source": {
            "@timestamp": (now - datetime.timedelta(milliseconds=number)).isoformat(),
            "service": {"name": service},
            "message": f"document {number}",
            "level": "info",
            "http": {"status": 200 + number % 3},
        },
    }
    for number in range(count)
)
stored, failures = helpers.bulk(client, documents, chunk_size=250)

bad = [
    {"_op_type": "index", "_index": "logs-app", "_source": {"service.name": service, "message": "", "@timestamp": now.isoformat()}},
    {"_op_type": "delete", "_index": "logs-app", "_id": "doc-1"},
    {"_op_type": "create", "_index": "logs-app", "_source": {"service.name": service, "message": "kept", "@timestamp": now.isoformat()}},
]
try:
    helpers.bulk(client, bad)
    refused = []
except helpers.BulkIndexError as error:
    refused = [list(item.values())[0]["status"] for item in error.errors]

print(json.dumps({"version": info["version"]["number"], "stored": stored, "failures": failures, "refused": refused}))
