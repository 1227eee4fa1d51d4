"""`evolver.mode: batch`: answer requests through the provider's batch API, resumably.

Each submitted batch is recorded in the request cache (its id and request keys) as soon as the
provider accepts it. A run that is killed while waiting and started again polls the batches it
already submitted instead of paying for new ones. When a batch ends (completed, expired, cancelled
or failed), every answer it has is cached; requests it did not answer are returned as leftovers,
which the caller sends one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from evolinstruct.llm.backends import Backend, Completion, Sampling
from evolinstruct.core.errors import EvolError
from evolinstruct.core.progress import Progress
from evolinstruct.llm.request_cache import RequestCache

log = logging.getLogger(__name__)


async def run_batches(
    backend: Backend,
    cache: RequestCache,
    todo: Mapping[str, str],
    sampling: Sampling,
    on_answer: Callable[[str, Completion], None],
    progress: Progress,
    admit: Callable[[list[str]], list[str]] | None = None,
) -> list[str]:
    """Answer the `{key: prompt}` requests in `todo` through batches; returns the keys left unanswered.

    `admit(keys)` may hold back some keys (the budget cap) before a batch is submitted; held-back
    keys are not submitted and are not returned as leftovers.
    """
    config = backend.config
    model = config.model
    pending: dict[str, list[str]] = {}
    for batch_id, keys in cache.open_batches(backend.name, model).items():
        wanted = [k for k in keys if k in todo]
        if wanted:
            pending[batch_id] = wanted
            log.info("resuming batch %s (%d requests) submitted by an earlier run", batch_id, len(wanted))
    covered = {k for keys in pending.values() for k in keys}
    fresh = [k for k in todo if k not in covered]
    if admit is not None:
        fresh = admit(fresh)
    size = max(1, config.batch_max_requests)
    for start in range(0, len(fresh), size):
        chunk = fresh[start : start + size]
        batch_id = await backend.submit_batch([(k, todo[k]) for k in chunk], sampling)
        cache.add_batch(batch_id, backend.name, model, chunk)  # before anything else can fail
        pending[batch_id] = chunk
        log.info("submitted batch %s with %d requests", batch_id, len(chunk))

    answered: set[str] = set()
    failures = 0
    while pending:
        for batch_id in list(pending):
            try:
                status = await backend.poll_batch(batch_id)
                results = await backend.batch_results(batch_id) if status.ended else None
            except Exception as exc:
                failures += 1
                if failures > config.max_retries:
                    raise EvolError(
                        f"could not poll batch {batch_id}: {type(exc).__name__}: {exc}",
                        "rerun later: the batch id is saved and will be polled again, not resubmitted",
                    ) from exc
                continue
            failures = 0
            if results is None:
                continue
            for key, completion in results.items():
                if key in todo and key not in answered:
                    answered.add(key)
                    on_answer(key, completion)
            cache.close_batch(batch_id, status.state or "ended")
            del pending[batch_id]
            missing = sum(1 for k in todo if k not in answered) if not pending else 0
            log.info("batch %s %s: %d answers", batch_id, status.state, len(results))
            if missing:
                progress.add("batch leftovers", missing)
        if pending:
            progress.emit()
            await asyncio.sleep(config.batch_poll_seconds)
    return [k for k in fresh + sorted(covered) if k not in answered]
