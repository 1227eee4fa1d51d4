"""A durable cache of answered LLM requests, so that no paid request is ever sent twice.

Each answer is committed to SQLite (WAL journal) before the pipeline uses it: a run killed at any
moment, even with SIGKILL, resumes by re-sending only the requests that never got an answer.
The key is a hash of (backend, its plugin's distribution and version, model, sampling params,
prompt, sample index); the cache holds prompts and answers, never keys or headers. Batch mode also
records each submitted provider batch (its id and the request keys in it) the moment it is
accepted, so a restarted run polls the batch it already paid for instead of submitting another.

The cache lives in the user's home, which DVC does not share. What a team shares is the answers
each round's output used: `export_round` writes them to `data/answers/round_<k>.jsonl` (a
persistent DVC output of `evolve`, so `dvc push`/`dvc pull` carry it and DVC does not delete it
before the stage runs), and `import_answers` loads a pulled folder into the cache before anything
is sent, so a teammate's clone replays the paid rounds byte for byte and pays only for new ones.
A model given as a local folder is keyed by the hash of its files, not by its path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
from pathlib import Path

from evolinstruct.core.atomic import atomic_open
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


#: The fields of one exported answer, in table order.
_ROW = ("key", "backend", "model", "text", "finish_reason", "prompt_tokens", "completion_tokens")
_ROUND_FILE = re.compile(r"round_(\d+)\.jsonl")


def answer_files(folder: Path, beyond: int | None = None) -> list[Path]:
    """The `round_<k>.jsonl` files of `folder` (all, or only those with k > `beyond`), by round."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _ROUND_FILE.fullmatch(p.name))]
    return [p for k, p in sorted(found) if beyond is None or k > beyond]


def prune_answers(folder: Path, rounds: int) -> None:
    """Remove the answer files of rounds past `rounds`: the folder holds what this output used."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in answer_files(folder, beyond=rounds):
        path.unlink()


def open_cache(configured: str, answers: Path | None = None) -> RequestCache:
    """The request cache, with the answer files of `answers` (if that folder exists) loaded in."""
    cache = RequestCache(cache_path(configured))
    if answers is not None:
        cache.import_answers(answers)
    return cache


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


@functools.lru_cache(maxsize=16)
def _folder_hash(folder: Path, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def model_identity(model: str, revision: str = "") -> str:
    """What a request key says about the model: a local folder by the sha256 of its files (paths
    and bytes; so new weights are never answered from the old ones' cache, and moving the folder
    keeps its answers), a hub id or API model by its name and pinned revision."""
    folder = Path(model).expanduser()
    if model and folder.is_dir():
        # Hashed once per process per state of the folder (sizes and mtimes), like DVC's own state.
        stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file())
        return "sha256:" + _folder_hash(folder.resolve(), stamp)
    return f"{model}@{revision}" if revision else model


def request_key(backend: str, model: str, sampling: Sampling, prompt: str, sample: int, version: str = "",
                revision: str = "") -> str:
    """The cache key of one request. `version` is the distribution and version of the backend's
    plugin ("evolinstruct 0.1.0"), so upgrading a backend plugin never serves the old version's
    answers; it is left out of the hash when empty (backends no plugin registered). `model` goes
    in through `model_identity`: a local model's content, a hub model's pinned `revision` (an
    identity `model_identity` returned passes through unchanged, so callers that make many keys
    compute it once and pass it as `model`)."""
    request = {"backend": backend, "model": model_identity(model, revision), "sampling": sampling.to_json(),
               "prompt": prompt, "sample": sample}
    if version:
        request["version"] = version
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Queued experiments (`dvc queue start -j N`) share the file: wait for another's import.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
        self._db.executescript(_SCHEMA)
        #: Round of every key asked for in this run (`expect`), and the keys answered (from the
        #: cache or sent) per round: what `export_round` writes.
        self._round_of: dict[str, int] = {}
        self._used: dict[int, set[str]] = {}

    def expect(self, key: str, round: int) -> None:
        """Say which round a key belongs to, so that its answer, once used, is exported with that round."""
        self._round_of[key] = round

    def _mark(self, key: str) -> None:
        round = self._round_of.get(key)
        if round is not None:
            self._used.setdefault(round, set()).add(key)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
            if row:
                self._mark(key)
        return Completion(*row) if row else None

    def put(self, key: str, backend: str, model: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, backend, model, text, finish_reason, prompt_tokens,"
                " completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, completion.text, completion.finish_reason,
                 completion.prompt_tokens, completion.completion_tokens),
            )
            self._mark(key)

    # --- answers that travel with the data (data/answers/round_<k>.jsonl) ----------------------------

    def import_answers(self, folder: Path) -> int:
        """Load every `round_<k>.jsonl` of `folder` (answers a run used, pulled with the data) into
        the cache, replacing what the cache holds under the same key: the shared files are what the
        shared data was built from, so replaying them rebuilds it byte for byte. Returns the count."""
        count = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for path in answer_files(folder):
                    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
                    for row in rows:
                        # An upsert that leaves equal rows alone: a rerun rewrites nothing.
                        self._db.execute(
                            "INSERT INTO answers (key, backend, model, text, finish_reason, prompt_tokens,"
                            " completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                            " text = excluded.text, finish_reason = excluded.finish_reason,"
                            " prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens"
                            " WHERE text != excluded.text OR finish_reason != excluded.finish_reason",
                            tuple(row[field] for field in _ROW))
                        count += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return count

    def export_round(self, folder: Path, round: int) -> Path:
        """Write the answers round `round` used in this run to `folder/round_<round>.jsonl`, sorted by
        key (the same answers give the same bytes), atomically."""
        keys = sorted(self._used.get(round, ()))
        target = folder / f"round_{round}.jsonl"
        with self._lock, atomic_open(target) as handle:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = self._db.execute(
                    f"SELECT {', '.join(_ROW)} FROM answers WHERE key IN ({', '.join('?' * len(chunk))}) ORDER BY key",
                    chunk).fetchall()
                for row in rows:
                    handle.write(json.dumps(dict(zip(_ROW, row, strict=True)), ensure_ascii=False, sort_keys=True))
                    handle.write("\n")
        return target

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
