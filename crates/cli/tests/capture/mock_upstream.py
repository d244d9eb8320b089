"""A mock model provider on loopback that speaks enough of the OpenAI and Anthropic APIs
for their official clients: chat completions (whole and streamed), embeddings, messages
(whole and streamed), and a rate-limit error. It records what it was sent (GET /calls),
so the tests can check the provider key arrived and the aitrail key did not. Streams
pause between events, so a test can tell chunk-by-chunk delivery from buffering. A call
for the model `locks-the-store` first takes the write lock of the SQLite database at
$MOCK_LOCK_DB and keeps it until GET /unlock: the store then fails while the call is out.

Prints `listening <port>` once ready. Standard library only."""

import json
import os
import sqlite3
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls = []
held = []
PAUSE = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # A provider's own cookie, which the client must get back as sent.
        self.send_header("Set-Cookie", "__cf_bm=mock-provider-cookie; Path=/; HttpOnly")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for i, (name, data) in enumerate(events):
            if i:
                time.sleep(PAUSE)
            line = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
            self.wfile.write(line.encode())
            self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        if self.path == "/calls":
            return self.send_json(200, calls)
        if self.path == "/unlock":
            while held:
                held.pop().close()
            return self.send_json(200, {})
        if self.path == "/v1/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_json(404, {"error": {"message": "no such route"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        calls.append({
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "x_api_key": self.headers.get("x-api-key"),
            "aitrail_headers": [h for h in self.headers if h.lower().startswith("x-aitrail")],
            "accept_encoding": self.headers.get("Accept-Encoding"),
            "cookie": self.headers.get("Cookie"),
            "header_values": [v for v in self.headers.values()],
            "model": body.get("model"),
        })
        if body.get("model") == "locks-the-store":
            store = sqlite3.connect(os.environ["MOCK_LOCK_DB"], isolation_level=None, check_same_thread=False)
            store.execute("BEGIN EXCLUSIVE")
            held.append(store)
        if body.get("model") == "slow":
            time.sleep(1.0)
        if body.get("model") == "rate-limited":
            return self.send_json(429, {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}})
        if self.path == "/v1/chat/completions":
            return self.chat(body)
        if self.path == "/v1/embeddings":
            return self.send_json(200, {"object": "list", "model": body["model"], "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}], "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        if self.path == "/v1/messages":
            return self.messages(body)
        self.send_json(404, {"error": {"message": f"no route {self.path}"}})

    def chat(self, body):
        model = body["model"]
        served = f"{model}-2024-08-06"
        words = ["The capital ", "of France ", "is Paris."]
        usage = {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}
        if not body.get("stream"):
            return self.send_json(200, {"id": "chatcmpl-mock1", "object": "chat.completion", "created": 1763900000, "model": served,
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}],
                                        "usage": usage})
        chunk = lambda delta, finish=None: {"id": "chatcmpl-mock2", "object": "chat.completion.chunk", "created": 1763900000, "model": served,
                                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        events = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": w}) for w in words] + [chunk({}, "stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": "chatcmpl-mock2", "object": "chat.completion.chunk", "created": 1763900000, "model": served, "choices": [], "usage": usage})
        self.send_events([(None, json.dumps(e)) for e in events] + [(None, "[DONE]")])

    def messages(self, body):
        model = body["model"]
        text = ["Bonjour", ", Paris!"]
        message = {"id": "msg_mock1", "type": "message", "role": "assistant", "model": model, "stop_reason": "end_turn", "stop_sequence": None}
        if not body.get("stream"):
            return self.send_json(200, {**message, "content": [{"type": "text", "text": "".join(text)}], "usage": {"input_tokens": 11, "output_tokens": 5}})
        events = [
            ("message_start", {"type": "message_start", "message": {**message, "stop_reason": None, "content": [], "usage": {"input_tokens": 11, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ] + [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}) for t in text] + [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.send_events([(name, json.dumps(e)) for name, e in events])


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
