"""The evaluate stage: protocols as params, labels next to every score, what extraction cut
recorded per sample, detail in reports/evaluate.json."""

import json

import pytest
import yaml
from evolinstruct.stages import evaluate as stage

from evolinstruct.core.errors import EvolError, ParamsError
from evolinstruct.core.params import EvaluateParams, parse_group
from evolinstruct.evaluate.run import resolve_protocol


def test_protocols_set_the_sampling_and_custom_is_the_only_way_to_choose_it():
    greedy = resolve_protocol(EvaluateParams())
    assert (greedy.name, greedy.n, greedy.temperature, greedy.k, greedy.max_new_tokens, greedy.max_length) == (
        "greedy", 1, 0.0, [1], 0, 2048)  # prompt + answer <= 2048 tokens, as upstream's max_length
    assert greedy.label == "greedy"
    paper = resolve_protocol(EvaluateParams(protocol="paper_sampled"))
    assert (paper.n, paper.temperature, paper.top_p, paper.k) == (20, 0.2, 0.95, [1])
    custom = resolve_protocol(EvaluateParams(protocol="custom", n_samples=200, temperature=0.8, k=[1, 10, 100]))
    assert custom.n == 200 and custom.label == "custom(n=200,T=0.8,top_p=0.95)"
    assert resolve_protocol(EvaluateParams(max_new_tokens=48)).label == "greedy+max_new_tokens=48"
    with pytest.raises(ParamsError, match="evaluate.n_samples: 20 is set, but protocol 'greedy' fixes it"):
        resolve_protocol(EvaluateParams(n_samples=20))
    with pytest.raises(ParamsError, match="evaluate.protocol: \"sampled\" should be 'greedy', 'paper_sampled' or "
                                          "'custom'; did you mean 'paper_sampled'"):
        parse_group(EvaluateParams, {"protocol": "sampled"}, "evaluate")


def test_paper_sampled_end_to_end_on_a_tiny_model(tiny_model, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models/sft").symlink_to(tiny_model)
    params = {"rounds": 1, "evolve": {"family": "code"},
              "evaluate": {"benchmarks": ["humaneval"], "limit": 2, "protocol": "paper_sampled",
                           "max_new_tokens": 8, "engine": "transformers", "device": "cpu", "workers": 4}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    stage.main()
    metrics = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert metrics == {"humaneval": {"pass@1": metrics["humaneval"]["pass@1"], "problems": 2,
                                     "protocol": "paper_sampled+max_new_tokens=8", "postprocess": "wizardcoder",
                                     "prompt": "wizardcoder-2023-06", "set": "all"}, "plugins": "evolinstruct==0.1.0"}
    report = json.loads((tmp_path / "reports/evaluate.json").read_text())["humaneval"]
    assert report["samples"] == 40 and report["settings"]["n"] == 20 and report["settings"]["temperature"] == 0.2
    rows = [json.loads(line) for line in (tmp_path / "data/eval/humaneval.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and sorted({r["sample"] for r in rows}) == list(range(20))
    assert all(isinstance(r["cut"], list) and {"task_id", "prompt", "completion", "answer", "passed", "result"} <= set(r)
               for r in rows)
    assert rows[0]["prompt"].startswith("Below is an instruction") and "\t" in rows[0]["prompt"]
    assert len({r["answer"] for r in rows if r["task_id"] == "HumanEval/0"}) > 1  # distinct draws


def test_evaluate_checks_every_benchmark_before_generating(tmp_path, monkeypatch):
    """A benchmark whose data is missing stops the stage before the model loads, with the full key."""
    from evolinstruct.evaluate import run

    params = {"evaluate": {"benchmarks": ["humaneval", "mbpp"], "engine": "transformers", "device": "cpu"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # MBPP's default source is the hub: not reachable, not cached
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(run, "Generator", lambda *a, **k: pytest.fail("the model loaded before the check"))
    with pytest.raises(EvolError) as caught:
        stage.main()
    assert "benchmark 'mbpp'" in str(caught.value) and "set evaluate.benchmark_options.mbpp.path" in caught.value.hint
    assert not (tmp_path / "data/eval").exists()
