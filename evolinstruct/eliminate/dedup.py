"""Exact and near-duplicate detection over instructions, the earliest record winning.

Exact: equal after lower-casing and collapsing whitespace. Near: MinHash over word n-gram (3 by default)
shingles with locality-sensitive hashing (bands x rows chosen so that the LSH threshold sits at
`threshold`), then each candidate pair is confirmed by the signatures' estimated Jaccard
similarity being at least `threshold`. Records are visited in order (seed first, then round 1, 2,
...), and a record is compared only with the records kept before it, so every removed record
points to the earlier one it duplicates. Signatures are computed vectorised with numpy in chunks,
which keeps 80k records to seconds and a few hundred MB.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower-case with whitespace collapsed: the key of exact deduplication."""
    return " ".join(text.lower().split())


def shingles(text: str, size: int = 3) -> set[int]:
    """32-bit hashes (crc32, stable across processes) of the word `size`-grams of `text`."""
    words = _WORD.findall(text.lower())
    if len(words) <= size:
        return {zlib.crc32(" ".join(words).encode())}
    return {zlib.crc32(" ".join(words[i : i + size]).encode()) for i in range(len(words) - size + 1)}


def lsh_shape(threshold: float, permutations: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= permutations whose S-curve midpoint (1/b)^(1/r) is nearest
    `threshold`, preferring more permutations used."""
    best = (1.0, 0, 1, 1)
    for rows in range(1, permutations + 1):
        bands = permutations // rows
        if bands < 1:
            break
        gap = abs((1 / bands) ** (1 / rows) - threshold)
        key = (round(gap, 3), -bands * rows, bands, rows)
        if key < best:
            best = key
    return best[2], best[3]


class MinHasher:
    """MinHash signatures with `permutations` universal hash functions, seeded for reproducibility."""

    def __init__(self, permutations: int = 128, seed: int = 1) -> None:
        rng = np.random.RandomState(seed)
        self.a = rng.randint(1, (1 << 61) - 1, size=permutations, dtype=np.uint64)
        self.b = rng.randint(0, (1 << 61) - 1, size=permutations, dtype=np.uint64)
        self.permutations = permutations

    def signatures(self, sets: Sequence[set[int]], chunk: int = 20000) -> np.ndarray:
        """A (len(sets), permutations) uint32 array; sets are hashed in chunks of ~`chunk` shingles."""
        out = np.empty((len(sets), self.permutations), dtype=np.uint32)
        start = 0
        while start < len(sets):
            end, size = start, 0
            while end < len(sets) and (size == 0 or size + len(sets[end]) <= chunk):
                size += max(1, len(sets[end]))
                end += 1
            group = sets[start:end]
            lengths = np.fromiter((max(1, len(s)) for s in group), dtype=np.int64, count=len(group))
            values = np.fromiter((v for s in group for v in (s or (0,))), dtype=np.uint64, count=int(lengths.sum()))
            hashed = ((values[:, None] * self.a[None, :] + self.b[None, :]) % _MERSENNE) & _MAX_HASH
            offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            out[start:end] = np.minimum.reduceat(hashed, offsets, axis=0).astype(np.uint32)
            start = end
        return out


@dataclass(frozen=True)
class Duplicate:
    """Record `index` duplicates the earlier record `of`; `similarity` is 1.0 for exact ones."""

    index: int
    of: int
    kind: str  # "exact" or "near"
    similarity: float


def find_duplicates(
    texts: Sequence[str],
    exact: bool = True,
    near: bool = True,
    threshold: float = 0.8,
    permutations: int = 128,
    shingle_size: int = 3,
    seed: int = 1,
) -> Iterator[Duplicate]:
    """Yield each text that duplicates an earlier kept one, in order. Exact duplicates are reported
    as exact only (never counted again as near ones)."""
    if not texts:
        return
    first_seen: dict[str, int] = {}
    kept_mask = np.ones(len(texts), dtype=bool)
    exact_of: dict[int, int] = {}
    if exact:
        for i, text in enumerate(texts):
            key = normalise(text)
            if key in first_seen:
                exact_of[i] = first_seen[key]
                kept_mask[i] = False
            else:
                first_seen[key] = i
    if not near:
        for i, of in exact_of.items():
            yield Duplicate(i, of, "exact", 1.0)
        return
    candidates = [i for i in range(len(texts)) if kept_mask[i]]
    hasher = MinHasher(permutations, seed)
    signatures = hasher.signatures([shingles(texts[i], shingle_size) for i in candidates])
    bands, rows = lsh_shape(threshold, permutations)
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    band_keys = [signatures[:, b * rows : (b + 1) * rows] for b in range(bands)]
    near_of: dict[int, tuple[int, float]] = {}
    for position, index in enumerate(candidates):
        signature = signatures[position]
        best: tuple[float, int] | None = None
        keys = [band_keys[b][position].tobytes() for b in range(bands)]
        seen: set[int] = set()
        for b, key in enumerate(keys):
            for other in tables[b].get(key, ()):
                if other in seen:
                    continue
                seen.add(other)
                similarity = float(np.mean(signatures[other] == signature))
                if similarity >= threshold and (best is None or similarity > best[0]):
                    best = (similarity, other)
        if best is not None:
            near_of[index] = (candidates[best[1]], best[0])
            continue
        for b, key in enumerate(keys):
            tables[b].setdefault(key, []).append(position)
    for i in sorted({*exact_of, *near_of}):
        if i in exact_of:
            yield Duplicate(i, exact_of[i], "exact", 1.0)
        else:
            of, similarity = near_of[i]
            yield Duplicate(i, of, "near", round(similarity, 4))
