"""Run OpenLIT's real OpenAI instrumentation against the fake OpenAI server, capture what its
own OTLP/HTTP exporter sends, and print it as OTLP/JSON (hex ids)."""
import base64, json, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
sys.path.insert(0, "/work/main/collector")
from infersight_collector.fake_provider import FakeOpenAI, Reply
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from google.protobuf import json_format

bodies = []
class Capture(BaseHTTPRequestHandler):
    def do_POST(self):
        bodies.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
sink = HTTPServer(("127.0.0.1", 0), Capture)
threading.Thread(target=sink.serve_forever, daemon=True).start()

import openlit, openai
openlit.init(otlp_endpoint=f"http://127.0.0.1:{sink.server_address[1]}", application_name="openlit-app",
             environment="test", disable_batch=True, disable_metrics=True, disable_events=True,
             capture_message_content=False)
with FakeOpenAI() as fake:
    fake.expect(Reply(model="gpt-4o-mini-2024-07-18", prompt_tokens=1200, completion_tokens=80))
    client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
traces = [b for p, b in bodies if p.endswith("/v1/traces")]
request = ExportTraceServiceRequest()
for b in traces:
    request.MergeFromString(b)
body = json.loads(json_format.MessageToJson(request))
for rs in body["resourceSpans"]:
    for ss in rs["scopeSpans"]:
        for span in ss["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if span.get(key):
                    span[key] = base64.b64decode(span[key]).hex()
print(json.dumps(body, indent=1))
