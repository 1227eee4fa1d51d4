import asyncio

from doubles import ScriptedBackend
from plugins_under_test import filters, heuristics

from evolinstruct.llm.backends import Sampling
from evolinstruct.evolve.rounds import RequestRunner, evolve_round
from evolinstruct.core.records import seed_record
from evolinstruct.llm.request_cache import RequestCache

CODE = [h for h in heuristics.builtin_heuristics() if h.family == "code"]
RULES = [filters.CopiedPromptWords(), filters.ShortSorry(), filters.OnlyStopWords(), filters.EqualityJudge()]


def run_rounds(backend, cache_path, seeds, rounds):
    cache = RequestCache(cache_path)
    runner = RequestRunner(backend, cache, Sampling(1.0, 0.9, 256))
    pool, history = seeds, []

    async def go():
        nonlocal pool
        for k in range(1, rounds + 1):
            attempts, pool, stats = await evolve_round(pool, k, CODE, {}, 42, runner, RULES)
            history.append((attempts, stats))

    asyncio.run(go())
    cache.close()
    return history, pool


def test_kept_evolution_replaces_its_parent_and_failed_ones_return_the_parent(tmp_path):
    seeds = [seed_record("Write a function that adds two numbers.", "def add(a, b): return a + b"),
             seed_record("Write a function that says sorry politely.", "def apologise(): return 'sorry'")]
    history, pool = run_rounds(ScriptedBackend(), tmp_path / "c.sqlite", seeds, 2)
    round1, stats1 = history[0]
    kept, eliminated = round1
    assert kept.status == "kept" and kept.parent_id == seeds[0].id and kept.round == 1
    assert kept.instruction == "Write a function that adds two numbers. Handle empty input."
    assert eliminated.status == "eliminated" and eliminated.reasons[0].rule == "sorry"
    assert stats1.kept == 1 and stats1.eliminated == 1 and stats1.rejections == {"sorry": 1}
    # Round 2 evolves the kept child, and the eliminated record's parent (the seed) again.
    round2, _ = history[1]
    assert round2[0].parent_id == kept.id and round2[0].root_id == seeds[0].id
    assert round2[1].parent_id == seeds[1].id
    assert pool[0] == round2[0]


def test_the_equality_judge_eliminates_equal_evolutions():
    seeds = [seed_record("Write a function that adds two numbers.", "x")]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        history, pool = run_rounds(ScriptedBackend(judge="Equal"), f"{tmp}/c.sqlite", seeds, 1)
    (attempt,), stats = history[0]
    assert attempt.status == "eliminated" and attempt.reasons[0].rule == "equality"
    assert pool == seeds


def test_a_request_that_exhausts_its_retries_marks_the_record_failed(tmp_path):
    seeds = [seed_record("Write a function that adds two numbers.", "x"), seed_record("Reverse a list.", "y")]
    history, pool = run_rounds(ScriptedBackend(fail_on="Reverse a list"), tmp_path / "c.sqlite", seeds, 1)
    attempts, stats = history[0]
    failed = [a for a in attempts if a.status == "failed"]
    assert len(failed) == 1 and failed[0].reasons[0].rule == "request_failed"
    assert "simulated timeout" in failed[0].reasons[0].evidence
    assert stats.failed == 1 and stats.kept == 1 and pool[1] == seeds[1]


def test_rerun_and_extra_round_pay_only_for_new_requests(tmp_path):
    seeds = [seed_record(f"Write function number {i}.", "x") for i in range(5)]
    first = ScriptedBackend()
    history3, _ = run_rounds(first, tmp_path / "c.sqlite", seeds, 3)
    again = ScriptedBackend()
    history_again, _ = run_rounds(again, tmp_path / "c.sqlite", seeds, 3)
    assert again.prompts == []  # everything answered from the cache
    assert [a for a, _ in history_again] == [a for a, _ in history3]  # identical records
    more = ScriptedBackend()
    history4, _ = run_rounds(more, tmp_path / "c.sqlite", seeds, 4)
    assert len(more.prompts) == 3 * 5  # round 4 only: evolve, answer, judge for each of 5 records
    assert history4[3][1].requests_sent == 15 and history4[0][1].requests_sent == 0
