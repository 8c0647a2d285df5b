#!/usr/bin/env python3
"""OTLP trace receiver standing in for Jaeger in the compose smoke.

Accepts OTLP/gRPC trace exports (TraceService/Export) on the endpoint the
Jaeger flags name, with TLS when they name a certificate and key, keeps the
spans in memory (bounded) and answers the two Jaeger query API calls the
smoke uses on 16686:

    GET /api/services                 {"data": ["intake", ...]}
    GET /api/traces?service=NAME      {"data": [{"traceID", "spans": [...]}]}

Flags as Jaeger v2 takes them (the compose `command:`):
    --set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:4317
    --set=receivers.otlp.protocols.grpc.tls.cert_file=...
    --set=receivers.otlp.protocols.grpc.tls.key_file=...
Others are accepted and ignored. Development only.
"""
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import grpc

MAX_SPANS = 100_000
lock = threading.Lock()
spans = []  # (service, trace_id, span_id, name)


def fields(buf):
    """Yields (field number, wire type, value) of a protobuf message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = varint(buf, i)
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = varint(buf, i)
            val, i = buf[i:i + ln], i + ln
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        yield num, wt, val


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def service_name(resource):
    for num, _, kv in fields(resource):
        if num != 1:
            continue
        key, value = "", ""
        for f, _, v in fields(kv):
            if f == 1:
                key = v.decode("utf-8", "replace")
            elif f == 2:
                for g, _, s in fields(v):
                    if g == 1:
                        value = s.decode("utf-8", "replace")
        if key == "service.name":
            return value
    return "unknown"


def export(request, context):
    got = []
    for num, _, resource_spans in fields(request):
        if num != 1:
            continue
        service, scope_spans = "unknown", []
        for f, _, v in fields(resource_spans):
            if f == 1:
                service = service_name(v)
            elif f == 2:
                scope_spans.append(v)
        for ss in scope_spans:
            for f, _, span in fields(ss):
                if f != 2:
                    continue
                trace_id = span_id = name = ""
                for g, _, v in fields(span):
                    if g == 1:
                        trace_id = v.hex()
                    elif g == 2:
                        span_id = v.hex()
                    elif g == 5:
                        name = v.decode("utf-8", "replace")
                got.append((service, trace_id, span_id, name))
    with lock:
        spans.extend(got)
        del spans[:-MAX_SPANS]
    print("otlp: %d spans" % len(got), flush=True)
    return b""  # an empty ExportTraceServiceResponse


class Otlp(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method.endswith("TraceService/Export"):
            return grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=None, response_serializer=None)
        return None


class Query(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        with lock:
            snapshot = list(spans)
        if url.path == "/api/services":
            names = sorted({s[0] for s in snapshot})
            body = {"data": names, "total": len(names)}
        elif url.path == "/api/traces":
            service = parse_qs(url.query).get("service", [""])[0]
            traces = {}
            for s in snapshot:
                if s[0] == service:
                    traces.setdefault(s[1], []).append(
                        {"traceID": s[1], "spanID": s[2], "operationName": s[3]})
            body = {"data": [{"traceID": t, "spans": v} for t, v in traces.items()],
                    "total": len(traces)}
        elif url.path in ("/", "/healthz"):
            body = {"status": "ok", "spans": len(snapshot)}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main(argv):
    opts = {}
    for a in argv:
        if a.startswith("--set="):
            k, _, v = a[len("--set="):].partition("=")
            opts[k] = v
    grpc_prefix = "receivers.otlp.protocols.grpc."
    endpoint = opts.get(grpc_prefix + "endpoint", "0.0.0.0:4317")
    cert = opts.get(grpc_prefix + "tls.cert_file")
    key = opts.get(grpc_prefix + "tls.key_file")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Otlp(),))
    if cert and key:
        with open(key, "rb") as k, open(cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(endpoint, creds)
    else:
        server.add_insecure_port(endpoint)
    server.start()
    print("otlp: OTLP/gRPC on %s (%s), query API on 0.0.0.0:16686"
          % (endpoint, "TLS" if cert else "plaintext"), flush=True)
    ThreadingHTTPServer(("0.0.0.0", 16686), Query).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
