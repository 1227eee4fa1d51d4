"""A loopback HTTP server speaking the OpenAI Chat Completions and Anthropic Messages wire formats,
for driving the real SDK clients in tests. Test-only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLMServer:
    def __init__(self, reply=lambda prompt: f"echo: {prompt}", fail_first: int = 0) -> None:
        self.reply, self.fail_first = reply, fail_first
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if server.fail_first > 0:
                    server.fail_first -= 1
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit_error"}},
                                      {"retry-after": "0"})
                prompt = body["messages"][0]["content"]
                text = server.reply(prompt)
                if self.path.endswith("/chat/completions"):
                    return self._send(200, {
                        "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                    })
                if self.path.endswith("/messages"):
                    return self._send(200, {
                        "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                        "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens",
                        "stop_sequence": None, "usage": {"input_tokens": 13, "output_tokens": 5},
                    })
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
