"""A durable cache of answered LLM requests, so that no paid request is ever sent twice.

Each answer is committed to SQLite (WAL journal) before the pipeline uses it: a run killed at any
moment, even with SIGKILL, resumes by re-sending only the requests that never got an answer.
The key is a hash of (backend, model, sampling params, prompt, sample index); the cache holds
prompts and answers, never keys or headers. Batch mode also records each submitted provider batch
(its id and the request keys in it) the moment it is accepted, so a restarted run polls the batch it
already paid for instead of submitting another.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from evolinstruct.llm.backends import Completion, Sampling

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
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    keys TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""


def cache_path(configured: str) -> Path:
    """Where the request cache lives: `evolver.cache` when set, else `$EVOLINSTRUCT_CACHE`, else
    `$XDG_CACHE_HOME/evolinstruct/requests.sqlite` (~/.cache by default).

    The default is outside the project on purpose: `dvc exp run --queue` runs each experiment in a
    temporary copy of the workspace, and a cache inside the project would start empty there, paying
    again for every round of an ablation sweep."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("EVOLINSTRUCT_CACHE"):
        return Path(os.environ["EVOLINSTRUCT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "evolinstruct" / "requests.sqlite"


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
        self._db.executescript(_SCHEMA)

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

    def add_batch(self, batch_id: str, backend: str, model: str, keys: list[str]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO batches (batch_id, backend, model, keys) VALUES (?, ?, ?, ?)",
                             (batch_id, backend, model, json.dumps(keys)))

    def open_batches(self, backend: str, model: str) -> dict[str, list[str]]:
        """Submitted batches whose results were not collected yet: {batch_id: request keys}."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, keys FROM batches WHERE backend = ? AND model = ? AND state = 'open' ORDER BY created",
                (backend, model),
            ).fetchall()
        return {batch_id: json.loads(keys) for batch_id, keys in rows}

    def close_batch(self, batch_id: str, state: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET state = ? WHERE batch_id = ?", (state, batch_id))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()
