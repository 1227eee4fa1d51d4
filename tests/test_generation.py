"""Turning model answers into programs: code extraction on real-looking outputs, stop sequences,
engine choice, and generation with a tiny local model."""

import pytest

from evolinstruct.core.errors import EvolError
from evolinstruct.evaluate.extract import extract_code
from evolinstruct.evaluate.generation import GenerationSettings, Generator, cut_at_stops, pick_engine

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


def test_transformers_generation_is_batched_reproducible_and_cut_at_stops(tiny_model):
    generator = Generator(str(tiny_model), "transformers", "cpu")
    prompts = ["### Instruction:\nAdd two numbers.\n\n### Response:", "### Instruction:\nSort.\n\n### Response:"] * 3
    greedy = GenerationSettings(max_new_tokens=12, batch_size=4)
    first = generator.generate(prompts, greedy)
    assert len(first) == 6 and first == generator.generate(prompts, greedy)
    assert first[0] == first[2] == first[4]  # same prompt, greedy: same answer, whatever the batch
    stopped = generator.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=4, stop=(first[0][3:5],)))
    assert all(first[0][3:5] not in a for a in stopped[::2] if first[0][3:5])
