from pathlib import Path

import pytest
import yaml

from evolinstruct.llm.backends import EvolverConfig
from evolinstruct.core.errors import ParamsError
from evolinstruct.core.params import deep_merge, load_params, parse_group, read_rounds

REPO = Path(__file__).resolve().parent.parent


def test_shipped_params_parse_with_the_contract_keys():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params["rounds"], int)
    for key in ("source", "limit"):
        assert key in params["seed"]
    config = parse_group(EvolverConfig, params["evolver"], "evolver")
    assert config.backend == "openai" and config.base_url == "" and config.max_concurrency > 0
    assert params["sft"]["learning_rate"] == 2e-5 and params["sft"]["global_batch_size"] == 512


def test_wrong_type_and_unknown_key_name_the_dotted_key():
    with pytest.raises(ParamsError, match=r"params.yaml: evolver.max_concurrency: expected int, got 'many'"):
        parse_group(EvolverConfig, {"max_concurrency": "many"}, "evolver")
    with pytest.raises(ParamsError, match=r"evolver.modle: unknown key"):
        parse_group(EvolverConfig, {"modle": "gpt"}, "evolver")
    assert parse_group(EvolverConfig, {"temperature": 1}, "evolver").temperature == 1.0  # int accepted as float


def test_rounds_must_be_a_non_negative_integer(tmp_path):
    path = tmp_path / "params.yaml"
    for bad in ("-1", "2.5", "true", "three"):
        path.write_text(f"rounds: {bad}\n")
        with pytest.raises(ParamsError, match="rounds"):
            read_rounds(path)
    path.write_text("rounds: 0\n")
    assert read_rounds(path) == 0


def test_demo_profile_only_overrides_known_keys():
    base = load_params(REPO / "params.yaml")
    profile = yaml.safe_load((REPO / "profiles/demo.yaml").read_text())

    def keys(d, prefix=""):
        for k, v in d.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]

    assert set(keys(profile)) <= set(keys(base))
    merged = deep_merge(base, profile)
    assert merged["evolver"]["backend"] == "transformers" and merged["evolver"]["top_p"] == base["evolver"]["top_p"]
