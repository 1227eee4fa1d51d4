"""A durable cache of answered LLM requests, so that no paid request is ever sent twice.

Each answer is committed to SQLite (WAL journal) before the pipeline uses it: a run killed at any
moment, even with SIGKILL, resumes by re-sending only the requests that never got an answer.
The key is a hash of (backend, model, sampling params, prompt, sample index); the cache holds
prompts and answers, never keys or headers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from .backends import Completion, Sampling

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def request_key(backend: str, model: str, sampling: Sampling, prompt: str, sample: int) -> str:
    blob = json.dumps(
        {"backend": backend, "model": model, "sampling": sampling.to_json(), "prompt": prompt, "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
        return Completion(*row) if row else None

    def put(self, key: str, backend: str, model: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, backend, model, text, finish_reason, prompt_tokens,"
                " completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, completion.text, completion.finish_reason,
                 completion.prompt_tokens, completion.completion_tokens),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()
