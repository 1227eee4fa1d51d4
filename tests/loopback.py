"""A loopback HTTP server speaking the OpenAI and Anthropic wire formats (Chat Completions,
Messages, and both batch APIs), with injectable latency and faults, for driving the real SDK
clients in tests and benchmarks. Test-only.

Run it as its own process (the benchmark does, so that it does not share a GIL with the client):
    python tests/loopback.py --latency 0.2 --error-rate 0.2 --hang-rate 0.02
It prints its URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo(prompt: str) -> str:
    return f"echo: {prompt}"


def evolver_reply(prompt: str) -> str:
    """Answers like a cooperative evolver: evolutions add a requirement, the judge says the two
    instructions differ, and answers are short programs (so most evolutions are kept)."""
    if prompt.startswith("Here are two Instructions"):
        return "Not Equal"
    if prompt.startswith("Please increase the difficulty"):
        question = prompt.rsplit("\n\n", 1)[1]
        return f"{question} Also handle empty input."
    return f"def solution(data):\n    # {prompt[:40]!r}\n    return sorted(data)"


REQUIREMENTS = [
    "The function must also accept an optional key argument that selects the value to compare.",
    "It should raise a ValueError with a clear message when the input contains values of mixed types.",
    "Handle inputs of up to a million items without recursion, in O(n log n) time at most.",
    "Return the result as a named tuple holding the value and its position in the input.",
    "Document the function with a docstring that gives two examples of its use.",
    "Empty input must return None rather than raising an exception.",
    "Do not use any function from the standard library other than those in itertools.",
]
WORDS = ("result values items index count total window buffer offset length number matrix row column "
         "mapping record field stream parser token").split()


def _rng(prompt: str):
    import hashlib

    return random.Random(hashlib.sha256(prompt.encode("utf-8")).digest())


def long_line(rng, chars: int = 20_000) -> str:
    """One line without a full stop, as a model writes a data table, a minified literal or a list."""
    parts, size = [], 0
    while size < chars:
        part = f"{rng.choice(WORDS)}_{rng.randint(0, 99999)}: {rng.randint(0, 10**6)}"
        parts.append(part)
        size += len(part) + 2
    return ("data = {" + ", ".join(parts))[: chars - 1] + "}"


def realistic_reply(prompt: str, long_line_rate: float = 0.0) -> str:
    """Answers as long as a model's, the same for the same prompt (whichever server answers):
    an evolution is the question plus two or three sentences of new requirements; an answer is
    150-400 tokens of prose around a Python code block (or, for `long_line_rate` of the answers,
    one 20,000-character line); a judge says "Not Equal"."""
    rng = _rng(prompt)
    if prompt.startswith("Here are two Instructions"):
        return "Not Equal"
    if prompt.startswith("Please increase the difficulty"):
        question = prompt.rsplit("\n\n", 1)[1]
        return question + " " + " ".join(rng.sample(REQUIREMENTS, rng.randint(2, 3)))
    if long_line_rate and rng.random() < long_line_rate:
        return long_line(rng)
    target = rng.randint(150, 400) * 4  # characters, at about 4 per token
    name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"
    code = [f"def {name}(values, key=None):", f'    """Return the {rng.choice(WORDS)} of values."""',
            "    if not values:", "        return None", "    best = None"]
    while sum(len(x) + 1 for x in code) < target * 0.6:
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        code.append(f"    {a} = [{b} for {b} in values if {b} is not None]  # keep the {a}")
    code.append("    return best")
    prose = [f"Here is a Python function that solves the task, named {name}.", "```python", *code, "```"]
    while sum(len(x) + 1 for x in prose) < target:
        prose.append(f"The {rng.choice(WORDS)} is computed once per {rng.choice(WORDS)}, so the whole "
                     f"function runs in linear time in the number of {rng.choice(WORDS)}s.")
    return "\n".join(prose)


def usage(prompt: str, text: str) -> tuple[int, int]:
    """Prompt and completion tokens, at about four characters per token."""
    return max(1, len(prompt) // 4), max(1, len(text) // 4)


#: Error bodies as OpenAI sends them (the 401 message quotes a masked key, as OpenAI's does).
STATUS_BODIES = {
    401: {"error": {"message": "Incorrect API key provided: sk-sec*****123.", "type": "invalid_request_error",
                    "code": "invalid_api_key"}},
    403: {"error": {"message": "You are not allowed to sample from this model", "type": "invalid_request_error"}},
    404: {"error": {"message": "The model `nosuch` does not exist or you do not have access to it.",
                    "type": "invalid_request_error", "code": "model_not_found"}},
    400: {"error": {"message": "Unrecognized request argument supplied: top_k", "type": "invalid_request_error"}},
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # clients that time out or are killed mid-request are part of the tests


class FakeLLMServer:
    """Answers `reply(prompt)`. Faults: the first `fail_first` requests get 429 (retry-after 0);
    then each request independently gets a fault with the given rates: `error_rate` (half 429 with
    retry-after, half 500), `malformed_rate` (200 with a broken body), `hang_rate` (no answer
    until the client gives up). `answered` counts the 200 answers per prompt, to prove that
    nothing is paid twice. Batches end after `batch_polls` status polls; `batch_answer_limit`
    makes them expire with only that many answers."""

    def __init__(self, reply=echo, fail_first: int = 0, latency: float = 0.0, error_rate: float = 0.0,
                 malformed_rate: float = 0.0, hang_rate: float = 0.0, hang_seconds: float = 30.0,
                 seed: int = 0, batch_polls: int = 1, batch_answer_limit: int | None = None,
                 port: int = 0, status: int = 0, status_after: int = 0, slow_rate: float = 0.0,
                 slow_seconds: float = 0.0, real_usage: bool = False) -> None:
        self.reply, self.fail_first, self.latency = reply, fail_first, latency
        #: Token counts from the texts' lengths (else a fixed 11 + 7, as older tests expect).
        self.real_usage = real_usage
        #: Every request after the first `status_after` answers gets this HTTP status (401, 404, 400...).
        self.status, self.status_after = status, status_after
        #: Long tail: this share of requests takes `slow_seconds` instead of `latency`.
        self.slow_rate, self.slow_seconds = slow_rate, slow_seconds
        self.error_rate, self.malformed_rate, self.hang_rate = error_rate, malformed_rate, hang_rate
        self.hang_seconds, self.batch_polls, self.batch_answer_limit = hang_seconds, batch_polls, batch_answer_limit
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.answered: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.dead = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle_get(self)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.handle_post(self, raw)

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if not self.dead:
            self.httpd.shutdown()
        self.httpd.server_close()

    def kill(self) -> None:
        """Die mid-run, as a crashed server does: new connections are refused, and requests on
        open connections are dropped without an answer."""
        self.dead = True
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def send(handler, status: int, payload, headers=None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def count(self, table: dict[str, int], key: str) -> None:
        with self.lock:
            table[key] = table.get(key, 0) + 1

    def duplicates(self) -> int:
        """Prompts that were answered (200) more than once."""
        return sum(1 for n in self.answered.values() if n > 1)

    # -- online requests -----------------------------------------------------------------------
    def draw_fault(self) -> str | None:
        with self.lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return "429-now"
            x = self.rng.random()
        for name, rate in (("hang", self.hang_rate), ("error", self.error_rate), ("malformed", self.malformed_rate)):
            if x < rate:
                return name
            x -= rate
        return None

    def handle_post(self, handler, raw: bytes) -> None:
        path = handler.path
        if path.endswith("/files"):
            return self.upload(handler, raw)
        body = json.loads(raw) if raw else {}
        if path.endswith("/batches") and "messages" not in path:
            return self.send(handler, 200, self.create_openai_batch(body))
        if path.endswith("/messages/batches"):
            return self.send(handler, 200, self.create_anthropic_batch(body))
        if not isinstance(body.get("messages"), list):
            return self.send(handler, 400, {"error": {"message": "no messages", "type": "invalid_request_error"}})
        with self.lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in handler.headers.items()})
        if self.status and sum(self.answered.values()) >= self.status_after:
            return self.send(handler, self.status, STATUS_BODIES.get(self.status, {"error": {"message": "refused"}}))
        with self.lock:
            slow = self.slow_rate and self.rng.random() < self.slow_rate
        if slow or self.latency:
            time.sleep(self.slow_seconds if slow else self.latency)
        if self.dead:
            handler.close_connection = True
            return None
        fault = self.draw_fault()
        if fault:
            self.count(self.faults, fault)
        if fault == "429-now":
            return self.send(handler, 429, {"error": {"message": "slow down", "type": "rate_limit_error"}},
                             {"retry-after": "0"})
        if fault == "hang":
            time.sleep(self.hang_seconds)
            handler.close_connection = True
            return None
        if fault == "error":
            if self.rng.random() < 0.5:
                return self.send(handler, 429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                 {"retry-after-ms": "50"})
            return self.send(handler, 500, {"error": {"message": "internal error", "type": "api_error"}})
        if body["messages"][-1]["content"].startswith("BAD REQUEST"):
            return self.send(handler, 400, {"error": {"message": "invalid prompt", "type": "invalid_request_error"}})
        if fault == "malformed":
            return self.send(handler, 200, None, raw=b'{"id": "cmpl-broken", "choices": [')
        prompt = body["messages"][-1]["content"]
        if path.endswith("/chat/completions"):
            payload = self.chat_completion(body)
        elif path.endswith("/messages"):
            payload = self.message(body)
        else:
            return self.send(handler, 404, {"error": {"message": f"no route {path}"}})
        self.count(self.answered, prompt)
        self.send(handler, 200, payload)

    def chat_completion(self, body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        text = self.reply(prompt)
        prompt_tokens, completion_tokens = usage(prompt, text) if self.real_usage else (11, 7)
        return {
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def message(self, body: dict) -> dict:
        text = self.reply(body["messages"][-1]["content"])
        return {
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens",
            "stop_sequence": None, "usage": {"input_tokens": 13, "output_tokens": 5},
        }

    # -- batches ---------------------------------------------------------------------------------
    def upload(self, handler, raw: bytes) -> None:
        head = f"Content-Type: {handler.headers['Content-Type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + raw)
        data = next(part.get_payload(decode=True) for part in message.iter_parts() if part.get_filename())
        with self.lock:
            file_id = f"file-{len(self.files)}"
            self.files[file_id] = data
        self.send(handler, 200, {"id": file_id, "object": "file", "bytes": len(data), "created_at": 0,
                                 "filename": "input.jsonl", "purpose": "batch", "status": "processed"})

    def new_batch(self, kind: str, items: list[tuple[str, dict]]) -> dict:
        with self.lock:
            batch_id = f"{'batch' if kind == 'openai' else 'msgbatch'}_{len(self.batches)}"
            self.batches[batch_id] = {"kind": kind, "items": items, "polls": 0, "output": None}
        return self.batches[batch_id]

    def create_openai_batch(self, body: dict) -> dict:
        lines = self.files[body["input_file_id"]].decode().splitlines()
        items = [(item["custom_id"], item["body"]) for item in map(json.loads, filter(None, lines))]
        batch = self.new_batch("openai", items)
        batch["input_file_id"] = body["input_file_id"]
        return self.openai_batch(self.batch_id(batch))

    def create_anthropic_batch(self, body: dict) -> dict:
        batch = self.new_batch("anthropic", [(r["custom_id"], r["params"]) for r in body["requests"]])
        return self.anthropic_batch(self.batch_id(batch))

    def batch_id(self, batch: dict) -> str:
        return next(k for k, v in self.batches.items() if v is batch)

    def finish(self, batch: dict) -> None:
        """Answer the batch's requests (up to batch_answer_limit; the rest expire)."""
        if batch["output"] is not None:
            return
        limit = len(batch["items"]) if self.batch_answer_limit is None else self.batch_answer_limit
        answered = batch["items"][:limit]
        for _, body in answered:
            self.count(self.answered, body["messages"][-1]["content"])
        batch["answered"], batch["expired"] = len(answered), len(batch["items"]) - len(answered)
        if batch["kind"] == "openai":
            lines = [{"id": f"req_{i}", "custom_id": cid, "error": None,
                      "response": {"status_code": 200, "request_id": f"r{i}", "body": self.chat_completion(body)}}
                     for i, (cid, body) in enumerate(answered)]
        else:
            lines = [{"custom_id": cid, "result": {"type": "succeeded", "message": self.message(body)}}
                     for cid, body in answered]
            lines += [{"custom_id": cid, "result": {"type": "expired"}} for cid, _ in batch["items"][limit:]]
        batch["output"] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        if batch["kind"] == "openai":
            self.files[f"out-{self.batch_id(batch)}"] = batch["output"]

    def poll(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        with self.lock:
            batch["polls"] += 1
            if batch["polls"] >= self.batch_polls:
                self.finish(batch)
        return batch

    def openai_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        ended = batch["output"] is not None
        status = "in_progress" if not ended else ("expired" if batch["expired"] else "completed")
        total = len(batch["items"])
        return {
            "id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
            "input_file_id": batch.get("input_file_id", ""), "completion_window": "24h", "status": status,
            "output_file_id": f"out-{batch_id}" if ended and batch["answered"] else None, "error_file_id": None,
            "created_at": 0, "request_counts": {"total": total, "completed": batch.get("answered", 0) if ended else 0,
                                                "failed": batch.get("expired", 0) if ended else 0},
        }

    def anthropic_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        ended = batch["output"] is not None
        total = len(batch["items"])
        return {
            "id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else total, "succeeded": batch.get("answered", 0) if ended else 0,
                               "errored": 0, "canceled": 0, "expired": batch.get("expired", 0) if ended else 0},
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-02T00:00:00Z", "ended_at": None,
            "archived_at": None, "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None,
        }

    def handle_get(self, handler) -> None:
        parts = handler.path.split("?")[0].rstrip("/").split("/")
        if parts[-2:-1] == ["batches"] and parts[-1] in self.batches:
            batch_id = parts[-1]
            self.poll(batch_id)
            kind = self.batches[batch_id]["kind"]
            return self.send(handler, 200, self.openai_batch(batch_id) if kind == "openai" else self.anthropic_batch(batch_id))
        if parts[-1] == "results" and parts[-2] in self.batches:
            return self.send(handler, 200, None, raw=self.batches[parts[-2]]["output"] or b"")
        if parts[-1] == "content" and parts[-2] in self.files:
            return self.send(handler, 200, None, raw=self.files[parts[-2]])
        self.send(handler, 404, {"error": {"message": f"no route {handler.path}"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    for name in ("latency", "error-rate", "malformed-rate", "hang-rate"):
        parser.add_argument(f"--{name}", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=0)
    parser.add_argument("--reply", choices=("echo", "evolver", "realistic"), default="echo")
    parser.add_argument("--long-line-rate", type=float, default=0.0,
                        help="--reply realistic: this share of answers is one 20,000-character line")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    replies = {"echo": echo, "evolver": evolver_reply,
               "realistic": lambda prompt: realistic_reply(prompt, args.long_line_rate)}
    server = FakeLLMServer(reply=replies[args.reply], real_usage=args.reply == "realistic", latency=args.latency, error_rate=args.error_rate, malformed_rate=args.malformed_rate,
                           hang_rate=args.hang_rate, hang_seconds=args.hang_seconds, seed=args.seed, port=args.port,
                           slow_rate=args.slow_rate, slow_seconds=args.slow_seconds, status=args.status)
    with server:
        print(server.url, flush=True)
        try:
            for line in iter(input, "stats"):
                del line
        except EOFError:
            pass
        print(json.dumps({"answered": sum(server.answered.values()), "unique": len(server.answered),
                          "duplicates": server.duplicates(), "faults": server.faults,
                          "requests": len(server.requests)}), flush=True)


if __name__ == "__main__":
    main()
