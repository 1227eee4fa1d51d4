"""Turning model answers into programs: code extraction on real-looking outputs, stop sequences,
engine choice, and generation with a tiny local model."""

import sys
import types

import pytest

from evolinstruct.core.errors import EvolError
from evolinstruct.evaluate.extract import DEFAULT_RULES, postprocess
from evolinstruct.evaluate.generation import (
    GenerationSettings,
    Generator,
    cut_at_stops,
    fast_generate,
    pick_engine,
)


def extract(answer, entry_point):
    """The lenient mode on an answer read on its own (no tabs to undo, no prompt before it)."""
    return postprocess(answer, "lenient", DEFAULT_RULES, entry_point)


def extract_code(answer, entry_point):
    return extract(answer, entry_point).code

CHATTY = '''Sure! Here is an efficient solution.

```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for i, a in enumerate(numbers):
        for b in numbers[i + 1:]:
            if abs(a - b) < threshold:
                return True
    return False


if __name__ == "__main__":
    print(has_close_elements([1.0, 2.0], 0.5))
```

This runs in O(n^2) time. Example usage:

```python
print(has_close_elements([1.0, 2.8], 0.3))
```
'''

HELPER_FIRST = '''```python
def helper(x):
    return x * 2
```
And the function you asked for:
```py
def double_all(xs):
    return [helper(x) for x in xs]
```'''


@pytest.mark.parametrize("answer, entry_point, expected, absent", [
    (CHATTY, "has_close_elements", "def has_close_elements(numbers: List[float], threshold: float) -> bool:",
     ["__main__", "Example usage", "print(has_close_elements([1.0, 2.8]"]),
    (HELPER_FIRST, "double_all", "def double_all(xs):", ["def helper"]),
    ("    return sorted(set(l))\n", "unique", "    return sorted(set(l))", []),  # a function-body completion
    ("```\ndef f():\n    return 1\n```", "f", "def f():", ["```"]),  # untagged fence
    ("```python\ndef f():\n    return 1\n", "f", "def f():\n    return 1", ["```"]),  # fence never closed
    ("def f():\n    return 1\n\nif __name__ == '__main__':\n    f()\n", "f", "def f():", ["__main__"]),
])
def test_extract_code_from_real_looking_answers(answer, entry_point, expected, absent):
    code = extract_code(answer, entry_point)
    assert expected in code
    assert all(a not in code for a in absent), code


def test_stop_sequences_cut_at_the_earliest_and_drop_it():
    text = "def f():\n    return 1\n### Instruction:\nWrite more\n### Response:"
    assert cut_at_stops(text, ["### Response:", "\n### Instruction:"]) == "def f():\n    return 1"
    assert cut_at_stops(text, []) == text and cut_at_stops("abc", ["zzz", ""]) == "abc"


def test_engine_choice():
    assert pick_engine("transformers") == "transformers"
    assert pick_engine("auto") in ("transformers", "vllm")
    with pytest.raises(EvolError, match="evaluate.engine"):
        pick_engine("tgi")


# Real answers of each kind, as instruction-tuned code models write them.
EXAMPLE_USAGE = '''def remove_Occ(s, ch):
    first = s.find(ch)
    if first != -1:
        s = s[:first] + s[first + 1:]
    last = s.rfind(ch)
    if last != -1:
        s = s[:last] + s[last + 1:]
    return s

# Example usage
print(remove_Occ("hello", "l"))  # Output: "heo"
'''

TESTS_APPENDED = '''Here's a Python script that solves the problem:

```python
def is_not_prime(n):
    if n < 2:
        return True
    for i in range(2, int(n ** 0.5) + 1):
        if n % i == 0:
            return True
    return False

# Test cases
assert is_not_prime(2) == False
assert is_not_prime(10) == True
assert is_not_prime(35) == False
```

The function checks divisors up to the square root of n.'''

TOP_LEVEL_PRINTS = '''def heap_queue_largest(nums, n):
    import heapq
    return heapq.nlargest(n, nums)


print(heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 3))
result = heap_queue_largest([1, 2, 3], 2)
print(result)
heap_queue_largest([1], 1)
'''

PREAMBLE = '''Sure! Here is the function you asked for:
def square_nums(nums):
    return list(map(lambda x: x ** 2, nums))
'''

MAIN_BLOCK = '''def first_repeated_char(s):
    seen = set()
    for c in s:
        if c in seen:
            return c
        seen.add(c)
    return "None"


if __name__ == "__main__":
    import sys
    print(first_repeated_char(sys.argv[1]))
'''


@pytest.mark.parametrize("answer, entry_point, kinds, kept, gone", [
    (EXAMPLE_USAGE, "remove_Occ", ["print"], "return s", ["print("]),
    (TESTS_APPENDED, "is_not_prime", ["prose", "after_code", "assert", "assert", "assert"], "return False",
     ["assert is_not_prime", "Here's", "square root"]),
    (TOP_LEVEL_PRINTS, "heap_queue_largest", ["print", "call", "print", "call"], "return heapq.nlargest",
     ["print(", "heap_queue_largest([1], 1)", "result ="]),
    (PREAMBLE, "square_nums", ["prose"], "def square_nums(nums):", ["Sure!"]),
    (MAIN_BLOCK, "first_repeated_char", ["main_block"], 'return "None"', ["__main__", "sys.argv"]),
    ("    return sorted(set(l))\nprint(unique([3, 1, 3]))\n", "unique", ["print"], "    return sorted(set(l))",
     ["print("]),  # a function-body completion with a trailing print
])
def test_extraction_cuts_what_models_append_and_records_it(answer, entry_point, kinds, kept, gone):
    result = extract(answer, entry_point)
    assert kept in result.code and all(g not in result.code for g in gone), result.code
    assert [c["kind"] for c in result.cut] == kinds
    assert all(c["text"] and c["text"] in answer for c in result.cut)
    compile(result.code, "answer", "exec") if not result.code.startswith(" ") else None


def test_a_correct_solution_followed_by_a_failing_example_passes_once_extracted():
    from evolinstruct.evaluate.sandbox import Limits, run_program

    answer = EXAMPLE_USAGE.replace('print(remove_Occ("hello", "l"))', 'print(remove_Occ(None, "l"))')
    tests = 'assert remove_Occ("hello","l") == "heo"\n'
    assert not run_program(answer + "\n" + tests, Limits(timeout=5)).passed  # as scored before
    assert run_program(extract_code(answer, "remove_Occ") + "\n" + tests, Limits(timeout=5)).passed


PROMPTS = ["### Instruction:\nAdd two numbers.\n\n### Response:", "### Instruction:\nSort.\n\n### Response:",
           "### Instruction:\nReverse a string and then print it twice.\n\n### Response:"]


def test_fast_generation_matches_one_plain_generate_call_token_for_token(tiny_model):
    from evolinstruct.llm import hf

    model, tokenizer = hf.load_model(str(tiny_model), device="cpu"), hf.load_tokenizer(str(tiny_model))
    plain = [g.text for g in hf.generate(model, tokenizer, PROMPTS * 2, 16, batch_size=6)]
    # Sorted by length, batches of 4: rows of different lengths end and leave their batch.
    assert fast_generate(model, tokenizer, PROMPTS * 2, GenerationSettings(max_new_tokens=16, batch_size=4)) == plain


def test_transformers_generation_is_batched_reproducible_and_stops_each_row(tiny_model):
    generator = Generator(str(tiny_model), "transformers", "cpu")
    prompts = PROMPTS[:2] * 3
    greedy = GenerationSettings(max_new_tokens=12, batch_size=4)
    first = [a for (a,) in generator.generate(prompts, greedy)]
    assert len(first) == 6 and first == [a for (a,) in generator.generate(prompts, greedy)]
    assert first[0] == first[2] == first[4]  # same prompt, greedy: same answer, whatever the batch
    stop = first[0][3:5]
    stopped = [a for (a,) in generator.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=4,
                                                                           stop=(stop,)))]
    assert all(stop not in a for a in stopped[::2] if stop) and stopped[0] == first[0][: first[0].find(stop)]


def test_the_transformers_evolver_samples_each_prompt_independently_of_its_batch_mates(tiny_model):
    """Same prompt, same text, whichever prompts share its batch: a resumed run (whose batches
    differ) writes what an uninterrupted one writes."""
    import asyncio

    from evolinstruct.plugins.transformers_backend import TransformersBackend

    from evolinstruct.llm.backends import EvolverConfig, Sampling

    backend = TransformersBackend(EvolverConfig(backend="transformers", model=str(tiny_model), device="cpu",
                                                batch_size=4))
    sampling = Sampling(temperature=1.0, top_p=0.9, max_tokens=12)

    def texts(prompts):
        out = {}
        asyncio.run(backend.complete_many(prompts, sampling, out.__setitem__))
        return [out[i].text for i in range(len(prompts))]

    target = "def add(a, b):"
    alone = texts([target])[0]
    crowded = texts(["import os", "class Stack:", target, "for x in range(10):\n    print(x)"])[2]
    again = texts(["x = 1", target])[1]
    assert alone == crowded == again
    others = texts(["import os", "import os", "class Stack:"])
    assert others[0] == others[1]  # a prompt's seed is its own
    assert len({*texts([f"def f{i}():" for i in range(4)])}) > 1  # still sampling, not one fixed answer



def test_transformers_samples_are_distinct_draws_and_reproducible(tiny_model):
    generator = Generator(str(tiny_model), "transformers", "cpu")
    settings = GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.95, batch_size=8, seed=5, n=4)
    first = generator.generate(PROMPTS[:2], settings, keys=["T/0", "T/1"])
    assert [len(s) for s in first] == [4, 4] and all(len(set(s)) == 4 for s in first)
    assert generator.generate(PROMPTS[:2], settings, keys=["T/0", "T/1"]) == first
    greedy = generator.generate(PROMPTS[:1], GenerationSettings(max_new_tokens=10, n=3, batch_size=4))
    assert len(greedy[0]) == 3 and len(set(greedy[0])) == 1


class FakeVLLM:
    """A stand-in for vLLM's `LLM.generate` (vllm is not installed here): it draws each request's
    n samples from a generator seeded with the request's `SamplingParams.seed`, as vLLM does."""

    def __init__(self):
        self.requests = []

    def generate(self, prompts, params):
        import random

        self.requests.append((list(prompts), list(params)))
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            rng = random.Random(p.seed)
            texts = [f"{prompt[-5:]}-{rng.random():.12f}" if p.temperature > 0 else f"{prompt[-5:]}-greedy"
                     for _ in range(p.n)]
            outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t) for t in texts]))
        return outputs


@pytest.fixture()
def fake_vllm(monkeypatch):
    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams, LLM=None))
    return FakeVLLM()


def test_vllm_asks_once_per_problem_for_n_distinct_seeded_samples(fake_vllm):
    from evolinstruct.evaluate.generation import vllm_generate

    settings = GenerationSettings(temperature=0.2, top_p=0.95, n=20, seed=1, stop=("\n### Instruction:",))
    answers = vllm_generate(fake_vllm, ["p one", "p two"], ["MBPP/11", "MBPP/12"], settings)
    (prompts, params), = fake_vllm.requests
    assert prompts == ["p one", "p two"] and [p.n for p in params] == [20, 20]  # one request per problem
    assert params[0].seed != params[1].seed and params[0].stop == ["\n### Instruction:"]
    assert all(len(a) == 20 and len(set(a)) == 20 for a in answers)  # n distinct draws
    assert vllm_generate(fake_vllm, ["p one", "p two"], ["MBPP/11", "MBPP/12"], settings) == answers  # rerun
    other_seed = vllm_generate(fake_vllm, ["p one"], ["MBPP/11"], GenerationSettings(temperature=0.2, n=20, seed=2))
    assert other_seed[0] != answers[0]
    greedy = vllm_generate(fake_vllm, ["p one"], ["MBPP/11"], GenerationSettings(n=3))
    assert fake_vllm.requests[-1][1][0].n == 1 and greedy == [["p one-greedy"] * 3]


def test_the_static_cache_path_gives_the_same_greedy_answers(tiny_model):
    # On a GPU (`compile: auto`) batches go through `generate` with a static KV cache and
    # torch.compile; on CPU the same path runs uncompiled, which checks everything but the compiler.
    from evolinstruct.llm import hf

    model, tokenizer = hf.load_model(str(tiny_model), device="cpu"), hf.load_tokenizer(str(tiny_model))
    evicting = fast_generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=8, batch_size=2, compile="false"))
    static = fast_generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=8, batch_size=2, compile="true"))
    assert static == evicting


def test_rows_that_end_make_room_for_the_next_prompts_without_changing_any_answer(tiny_model, monkeypatch):
    # Answers end at lengths that vary with the prompt; with 2 rows a batch, later prompts join a
    # running batch (their cache left-padded to the batch's length) as soon as rows have left.
    from evolinstruct.demo.tiny import end_answers_every
    from evolinstruct.evaluate import generation
    from evolinstruct.llm import hf

    model, tokenizer = hf.load_model(str(tiny_model), device="cpu"), hf.load_tokenizer(str(tiny_model))
    hook = end_answers_every(model, tokenizer.eos_token_id, 7)
    prompts = PROMPTS + [p.replace("Instruction", "Task") for p in PROMPTS] + ["### Response:", "def f():", "x = 1"]
    plain = [g.text for g in hf.generate(model, tokenizer, prompts, 24, batch_size=9)]
    joins = []
    join = generation._join_caches
    monkeypatch.setattr(generation, "_join_caches", lambda old, new: joins.append(1) or join(old, new))
    stats = {}
    mine = fast_generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=24, batch_size=2), stats=stats)
    hook.remove()
    assert joins and mine == plain
    assert len({len(t) for t in plain}) > 2 and stats["new_tokens"] < 24 * len(prompts)


def test_an_answer_with_a_nul_byte_is_extracted_not_a_crash():
    """A sampled random-weight model wrote a NUL byte. `ast.parse` raises ValueError for it on some
    Python 3.11 releases (SyntaxError on others), which once stopped the whole evaluate stage."""
    for answer in ("    return x\x00 + 1\nprint(f(1))\n", "```python\ndef f(x):\n    return x\x00\n```\nassert f(1)\n"):
        result = extract(answer, "f")
        assert "\x00" in result.code  # kept as written: the sandbox scores it (a failure), nothing stops


def _humaneval_samples(tiny_model, n=3, tokens=6):
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct.evaluate.benchmarks import prompt_for

    benchmark = HumanEval()
    problems = benchmark.load({})
    prompts, keys = [prompt_for(benchmark, p) for p in problems], [p.task_id for p in problems]
    generator = Generator(str(tiny_model), "transformers", "cpu")

    def run(batch_size, which):
        settings = GenerationSettings(max_new_tokens=tokens, temperature=0.8, top_p=0.95, batch_size=batch_size, seed=7,
                                      n=n)
        return generator.generate([prompts[i] for i in which], settings, keys=[keys[i] for i in which])

    return run


def test_a_tasks_samples_depend_on_the_task_not_on_the_batch_or_the_other_problems(tiny_model):
    """Batch size 1, 4 or 16, and a run of one problem or of several: the same samples per task
    (each sample draws from a generator seeded by run seed, task id and sample index)."""
    run = _humaneval_samples(tiny_model)
    target = 40
    crowd = run(16, [3, 7, target, 100, 120, 163])
    assert run(1, [target]) == run(4, [target]) == [crowd[2]]
    assert run(4, [target, 100])[0] == crowd[2]
    assert len(set(crowd[2])) > 1  # still n distinct draws
    assert len({tuple(s) for s in crowd}) == 6  # each task its own draws


@pytest.mark.slow
def test_a_tasks_samples_are_the_same_in_a_run_of_all_164_problems(tiny_model):
    run = _humaneval_samples(tiny_model, n=2, tokens=4)
    everything = run(16, range(164))
    assert run(1, [40]) == [everything[40]] and run(4, [3, 40])[1] == everything[40]


def test_max_length_bounds_prompt_and_answer_together(tiny_model):
    from evolinstruct.llm import hf

    model, tokenizer = hf.load_model(str(tiny_model), device="cpu"), hf.load_tokenizer(str(tiny_model))
    stats = {}
    lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    texts = fast_generate(model, tokenizer, PROMPTS, GenerationSettings(max_length=max(lengths) + 4, batch_size=2,
                                                                       stop=()), stats=stats)
    budgets = [max(lengths) + 4 - n for n in lengths]
    assert len(texts) == 3 and stats["new_tokens"] <= sum(budgets)
    assert GenerationSettings(max_length=2048).new_tokens(2000) == 48
    assert GenerationSettings(max_length=2048).new_tokens(4000) == 1
    assert GenerationSettings(max_new_tokens=9).new_tokens(4000) == 9
