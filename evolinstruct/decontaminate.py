"""Benchmark decontamination: flag training records that overlap a benchmark problem.

The practice of the code-LLM literature: text is normalised (lower case, words only, so whitespace,
punctuation and formatting changes do not hide a match) and a record is contaminated when it
shares a word n-gram of length `ngram` (13 by default, as in GPT-3's and many later analyses)
with a benchmark's prompt or reference solution. Matching a long n-gram of the normalised text is
a normalised substring match of that length, so renaming the variables of a planted problem
does not hide it: its docstring or statement still matches. A whole benchmark prompt shorter
than `ngram` words but at least `min_words` long is matched as a normalised substring (an
n-gram of its own length). Only benchmark n-grams in which at least half the words have three or
more letters are indexed (sequences of digits and one-letter names match anywhere). Reference
solutions need a longer overlap (`solution_ngram`, 25
words): short code idioms (a prime test, gcd, a swap) are shared by every code corpus and prove
nothing.

Benchmark n-grams are hashed once into sorted arrays, one per n-gram length; each record's
n-gram hashes come from a vectorised polynomial hash and are looked up with `np.searchsorted`,
so 80k records take seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evolinstruct.evaluate.benchmarks import Problem

_WORD = re.compile(r"[a-z0-9_]+")
_BASE = np.uint64(1_000_003)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hashes of every window of `n` ids (uint64 arithmetic, wrapping), computed as n
    vectorised multiply-adds so memory stays at two arrays the size of `ids`."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    out = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            out *= _BASE
            out += ids[j : j + count]
    return out


def informative_windows(tokens: Sequence[str], n: int) -> np.ndarray:
    """Mask of the windows of `n` tokens in which at least half the tokens are words (or identifiers)
    of three or more letters: runs of digits, single letters and punctuation-like code (`0 1 2 ... a b c`, `arr j
    arr j 1`) match across unrelated texts and prove nothing."""
    flags = np.fromiter((len(t) >= 3 and t.replace("_", "").isalpha() for t in tokens), dtype=np.int64,
                        count=len(tokens))
    sums = np.convolve(flags, np.ones(n, dtype=np.int64), mode="valid")
    return sums * 2 >= n


@dataclass(frozen=True)
class Overlap:
    benchmark: str
    task_id: str
    field: str  # which benchmark text matched: "prompt" or "solution"
    record_field: str  # which record text: "instruction" or "output"
    text: str  # the overlapping words


class Decontaminator:
    """An index of benchmark n-grams. `check_many([(instruction, output), ...])` returns the
    overlaps of each record; `check(instruction, output)` those of one."""

    RECORD_FIELDS = ("instruction", "output")

    def __init__(self, benchmarks: dict[str, list[Problem]], ngram: int = 13,
                 min_words: int = 8, solution_ngram: int = 25) -> None:
        self.ngram, self.min_words, self.solution_ngram = ngram, min_words, solution_ngram
        #: Benchmark words get ids from 1; every other word is 0, which no benchmark n-gram contains.
        self.vocab: dict[str, int] = {}
        per_length: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.sources: list[tuple[str, str, str]] = []  # (benchmark, task_id, field)
        for name, problems in sorted(benchmarks.items()):
            for problem in problems:
                for field, text in (("prompt", problem.prompt), ("solution", problem.reference)):
                    tokens = words(text)
                    # Code is full of idioms (a prime test, gcd, a swap) that any corpus shares; a
                    # solution only counts as leaked through a long overlap, and never whole if short.
                    size = min(ngram, len(tokens)) if field == "prompt" else solution_ngram
                    if len(tokens) < max(min_words, size):
                        continue
                    ids = np.fromiter((self.vocab.setdefault(t, len(self.vocab) + 1) for t in tokens),
                                      dtype=np.uint64, count=len(tokens))
                    grams = window_hashes(ids, size)[informative_windows(tokens, size)]
                    if not len(grams):
                        continue
                    hashes, owners = per_length.setdefault(size, ([], []))
                    hashes.append(grams)
                    owners.append(np.full(len(grams), len(self.sources), dtype=np.int64))
                    self.sources.append((name, problem.task_id, field))
        #: n-gram length -> (sorted hashes, the source index of each)
        self.index: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for size, (hashes, owners) in per_length.items():
            joined = np.concatenate(hashes)
            order = np.argsort(joined, kind="stable")
            self.index[size] = (joined[order], np.concatenate(owners)[order])

    def check(self, instruction: str, output: str) -> list[Overlap]:
        return self.check_many([(instruction, output)])[0]

    def check_many(self, records: Sequence[tuple[str, str]], chunk: int = 4000) -> list[list[Overlap]]:
        results: list[list[Overlap]] = []
        for start in range(0, len(records), chunk):
            results.extend(self._check_chunk(records[start : start + chunk]))
        return results

    def _check_chunk(self, records: Sequence[tuple[str, str]]) -> list[list[Overlap]]:
        texts = [words(text) for pair in records for text in pair]
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        get = self.vocab.get
        ids = np.fromiter((get(w, 0) for t in texts for w in t), dtype=np.uint64, count=int(lengths.sum()))
        text_of = np.repeat(np.arange(len(texts)), lengths)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        # (text, source) -> list of matching window starts (global positions) and their size
        hits: dict[tuple[int, int], tuple[int, list[int]]] = {}
        for size, (hashes, owners) in self.index.items():
            grams = window_hashes(ids, size)
            if not len(grams):
                continue
            inside = text_of[: len(grams)] == text_of[size - 1 :]  # windows that do not straddle texts
            positions = np.minimum(np.searchsorted(hashes, grams), len(hashes) - 1)
            for window in np.flatnonzero(inside & (hashes[positions] == grams)):
                key = (int(text_of[window]), int(owners[positions[window]]))
                hits.setdefault(key, (size, []))[1].append(int(window))
        results: list[list[Overlap]] = [[] for _ in records]
        for (text, source), (size, windows) in sorted(hits.items()):
            best_start, best_len, run_start = windows[0], 1, windows[0]
            for previous, window in zip(windows, windows[1:], strict=False):
                if window != previous + 1:
                    run_start = window
                if window - run_start + 1 > best_len:
                    best_start, best_len = run_start, window - run_start + 1
            local = best_start - int(starts[text])  # the longest overlapping run is the evidence
            evidence = " ".join(texts[text][local : local + best_len + size - 1])
            name, task_id, field = self.sources[source]
            results[text // 2].append(Overlap(name, task_id, field, self.RECORD_FIELDS[text % 2], evidence))
        return results
