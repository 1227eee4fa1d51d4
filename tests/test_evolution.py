import asyncio

from doubles import ScriptedBackend
from plugins_under_test import filters, heuristics

from evolinstruct.core.records import seed_record
from evolinstruct.evolve.rounds import RequestRunner, evolve_round
from evolinstruct.llm.backends import Sampling
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


class Jittery(ScriptedBackend):
    """Answers after a random delay, so requests complete in a different order every run."""

    def __init__(self, rng_seed, **kwargs):
        super().__init__(**kwargs)
        import random

        self.rng = random.Random(rng_seed)

    async def complete(self, prompt, sampling):
        await asyncio.sleep(self.rng.random() * 0.01)
        return await super().complete(prompt, sampling)


def evolve_to_files(backend, folder, seeds, rounds, runner_kwargs=None):
    from evolinstruct.core.records import write_records
    from evolinstruct.evolve.rounds import Evolver

    cache = RequestCache(folder / "c.sqlite")
    runner = RequestRunner(backend, cache, Sampling(1.0, 0.9, 256), **(runner_kwargs or {}))
    attempts, _, stats = asyncio.run(Evolver(runner, CODE, {}, 42, RULES).run(seeds, 1, rounds))
    cache.close()
    for k in range(1, rounds + 1):
        write_records(folder / f"round_{k}.jsonl", attempts[k])
    return {k: (folder / f"round_{k}.jsonl").read_bytes() for k in range(1, rounds + 1)}, stats


SEEDS30 = [seed_record(f"Write function number {i} of the library.", "x") for i in range(24)] + \
    [seed_record(f"Say sorry in language {i}.", "y") for i in range(3)] + \
    [seed_record(f"Reverse list {i}.", "z") for i in range(3)]


def test_outputs_are_byte_identical_whatever_order_the_requests_complete_in(tmp_path):
    runs = []
    for n, rng_seed in enumerate((1, 2)):
        folder = tmp_path / str(n)
        folder.mkdir()
        backend = Jittery(rng_seed, fail_on="Reverse list 1")
        runs.append(evolve_to_files(backend, folder, SEEDS30, 3))
    (first, stats), (second, _) = runs
    assert first == second
    assert stats[1].kept and stats[1].eliminated and stats[1].failed  # every path was taken
    # The failed and eliminated records' parents went back to the pool: round 2 evolves the seed again.
    sorry = [r for r in (tmp_path / "0/round_2.jsonl").read_text().splitlines() if "Say sorry in language 0" in r]
    assert sorry and all('"parent_id": "' + SEEDS30[24].id in r for r in sorry)


class OnDevice(ScriptedBackend):
    """A local backend: it overrides complete_many (as the transformers backend does), so rounds
    are sent phase by phase."""

    async def complete_many(self, prompts, sampling, on_done, control=None):
        self.batches = getattr(self, "batches", []) + [len(prompts)]
        for i, prompt in enumerate(prompts):
            try:
                on_done(i, await self.complete(prompt, sampling))
            except Exception as exc:
                on_done(i, exc)


def test_phased_backends_write_the_same_records_as_the_stream(tmp_path):
    (tmp_path / "stream").mkdir()
    (tmp_path / "phases").mkdir()
    streamed, _ = evolve_to_files(Jittery(3), tmp_path / "stream", SEEDS30, 2)
    device = OnDevice()
    phased, _ = evolve_to_files(device, tmp_path / "phases", SEEDS30, 2)
    assert phased == streamed
    assert device.batches[0] == 30  # the whole round's evolutions went to the device together


def test_echoed_scaffolding_is_stripped_before_the_filters_and_counted(tmp_path):
    from evolinstruct.evolve.rounds import strip_scaffolding

    class Echoes(ScriptedBackend):
        async def complete(self, prompt, sampling):
            completion = await super().complete(prompt, sampling)
            if prompt.startswith("Please increase the difficulty"):
                return Completion("#Rewritten Prompt#:\n" + completion.text, prompt_tokens=1, completion_tokens=1)
            return completion

    from evolinstruct.llm.backends import Completion

    seeds = [seed_record(f"Write function number {i}.", "x") for i in range(4)]
    history, _ = run_rounds(Echoes(), tmp_path / "c.sqlite", seeds, 1)
    attempts, stats = history[0]
    assert all(a.status == "kept" and not a.instruction.startswith("#") for a in attempts)
    assert stats.scaffolding_stripped == 4
    for text, expected in (("Rewritten Test:\nSort it.", "Sort it."), ("**Rewritten Prompt:** Sort it.", "Sort it."),
                           ("#Created Prompt#: Sort it.", "Sort it."), ("New prompt: Sort it.", "Sort it."),
                           ("Rewritten tests must pass.", "Rewritten tests must pass."),
                           ("Sort it, then print the given prompt:", "Sort it, then print the given prompt:")):
        assert strip_scaffolding(text)[0] == expected, text
