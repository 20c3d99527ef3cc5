#!/usr/bin/env python3
"""An OTLP/HTTP receiver for the benchmark's telemetry runs: it answers every export at once,
keeps nothing, and counts the spans it was sent, so the benchmark can show that none were dropped
on the way (a full export queue drops spans, which would flatter the gateway).

    python3 bench/otlp_sink.py      # prints "otlp-sink listening on http://127.0.0.1:PORT"
    GET /count                      # {"spans": N, "exports": N}

It runs as a process of its own so its CPU time is measured apart from the gateway's: in a real
deployment the collector runs elsewhere. Only the nesting down to spans is read (protobuf field
numbers of opentelemetry-proto's trace service); each span's own bytes are skipped.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2, ScopeSpans.spans = 2
PATH_TO_SPANS = (1, 2, 2)

lock = threading.Lock()
counts = {"spans": 0, "exports": 0}


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf, wanted):
    """The bytes of each length-delimited field numbered `wanted` in the message `buf`."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = varint(buf, i)
            if number == wanted:
                yield buf[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")


def spans(body):
    level = [memoryview(body)]
    for number in PATH_TO_SPANS:
        level = [f for m in level for f in fields(m, number)]
    return len(level)


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/v1/traces"):
            n = spans(body)
            with lock:
                counts["spans"] += n
                counts["exports"] += 1
        self.answer(b"", "application/x-protobuf")

    def do_GET(self):
        with lock:
            self.answer(json.dumps(counts).encode(), "application/json")

    def answer(self, body, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    print(f"otlp-sink listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
