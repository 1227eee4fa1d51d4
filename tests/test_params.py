"""The params schema: params as users and `dvc exp run -S` write them, and one clear line per
mistake, naming the file, the dotted key and the value."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import finish_stage

from evolinstruct.cli.main import cli
from evolinstruct.cli.params_docs import params_markdown
from evolinstruct.core import params as schema
from evolinstruct.core.errors import ParamsError
from evolinstruct.core.params import (
    Params,
    deep_merge,
    load_params,
    parse_group,
    read_params,
    read_rounds,
    validate_layers,
)
from evolinstruct.llm.backends import EvolverConfig

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    """Every line the params error prints for `path` (its folder left out)."""
    with pytest.raises(ParamsError) as info:
        read_params(path)
    assert all(line.startswith(f"{path}: ") for line in info.value.lines())
    return [line.removeprefix(f"{path.parent}/") for line in info.value.lines()]


@pytest.fixture
def shipped(source) -> Path:
    """params.yaml as committed (the working tree's may hold a `dvc exp run -S` value)."""
    return source / "params.yaml"


def test_shipped_params_parse_with_the_contract_keys(shipped):
    params = read_params(shipped)
    assert params.rounds == 3 and params.seed.source == "hf:sahil280114/codealpaca"
    assert params.evolver.backend == "openai" and params.evolver.base_url == "" and params.evolver.max_concurrency == 16
    assert params.sft.learning_rate == 2e-5 and params.sft.global_batch_size == 512
    assert params.evolver.prices == {}  # prices live in prices.yaml: not a stage param
    # Every key the shipped file sets is a schema key with the value the file gives (nothing dropped).
    raw = load_params(shipped)
    dumped = params.model_dump()
    for group, values in raw.items():
        if isinstance(values, dict):
            assert {k: dumped[group][k] for k in values} == values, group
        else:
            assert dumped[group] == values


def test_params_yaml_spells_out_every_key_so_dvc_set_can_override_it(shipped):
    """`dvc exp run -S group.key=value` refuses a key the file does not have (it would need `+`).
    `evolver.prices` is the exception: prices live in prices.yaml, and the override is added with `+`."""
    raw = load_params(shipped)
    assert sorted(raw) == sorted(Params.model_fields)
    for name, model in schema.GROUPS.items():
        expected = sorted(set(model.model_fields) - ({"prices"} if name == "evolver" else set()))
        assert sorted(raw[name]) == expected, f"params.yaml: {name} keys differ from the schema"


def test_defaults_equal_the_shipped_params_yaml(shipped):
    """The schema's defaults are the paper's settings that params.yaml spells out."""
    assert Params().model_dump() == read_params(shipped).model_dump()


@pytest.mark.parametrize("text", ["2e-5", "3e-05", "1e-4", "2.0e-5", "1E-4", "0.00002"])
def test_small_floats_are_floats_as_written_by_users_and_dvc(tmp_path, text):
    path = write(tmp_path, f"sft:\n  learning_rate: {text}\n")
    assert load_params(path)["sft"]["learning_rate"] == float(text)
    assert read_params(path).sft.learning_rate == float(text)


def test_an_int_is_accepted_for_a_float_and_a_bool_is_no_int(tmp_path):
    params = read_params(write(tmp_path, "sft: {epochs: 3}\nevolver: {rpm: 100, temperature: 1}\n"))
    assert params.sft.epochs == 3.0 and isinstance(params.sft.epochs, float)
    assert params.evolver.rpm == 100.0 and isinstance(params.evolver.temperature, float)
    assert problems(write(tmp_path, "evolver: {max_retries: true}\n")) == [
        "params.yaml: evolver.max_retries: true should be a valid integer"]
    assert problems(write(tmp_path, "evolver: {temperature: false}\n")) == [
        "params.yaml: evolver.temperature: false should be a valid number"]
    assert problems(write(tmp_path, 'evolver: {max_concurrency: "16"}\n')) == [
        'params.yaml: evolver.max_concurrency: "16" should be a valid integer']


def test_a_top_level_typo_is_an_error_with_did_you_mean(tmp_path):
    path = write(tmp_path, "round: 4\n")
    assert problems(path) == ["params.yaml: round: unknown key (value 4); did you mean 'rounds'?"]
    assert problems(write(tmp_path, "nosuch: 1\n"))[0].startswith(
        "params.yaml: nosuch: unknown key (value 1); known keys: rounds, seed, evolver,")


@pytest.mark.parametrize(("text", "line"), [
    ("evolver: {max_concurrency: 0}", "evolver.max_concurrency: 0 should be greater than or equal to 1"),
    ("evolver: {max_concurrency: -5}", "evolver.max_concurrency: -5 should be greater than or equal to 1"),
    ("evolver: {rpm: -1}", "evolver.rpm: -1 should be greater than or equal to 0"),
    ("evolver: {max_failure_share: 1.2}", "evolver.max_failure_share: 1.2 should be less than or equal to 1"),
    ("eliminate: {near_dedup_threshold: 1.5}", "eliminate.near_dedup_threshold: 1.5 should be less than or equal to 1"),
    ("rounds: -1", "rounds: -1 should be greater than or equal to 0"),
    ("rounds: 2.5", "rounds: 2.5 should be a valid integer"),
    ("evolver: {mode: onlin}", "evolver.mode: \"onlin\" should be 'online' or 'batch'; did you mean 'online'?"),
    ("sft: {precision: bf15}", "sft.precision: \"bf15\" should be 'auto', 'bf16', 'fp16' or 'fp32'; "
                               "did you mean 'bf16'?"),
    ("evaluate: {engine: vlm}", "evaluate.engine: \"vlm\" should be 'auto', 'vllm' or 'transformers'; "
                                "did you mean 'vllm'?"),
    ("sft: {lerning_rate: 3e-05}", "sft.lerning_rate: unknown key (value 3e-05); did you mean 'learning_rate'?"),
    ("evolver: {prices: {gpt-4o: {inptu: 1}}}",
     "evolver.prices.gpt-4o.inptu: unknown key (known keys: input, output); did you mean 'input'?"),
    ("evaluate: {k: [1, 0]}", "evaluate.k[1]: 0 should be greater than or equal to 1"),
    ("seed: 5", "seed: 5 should be a mapping"),
    ("evolve: {filters: sorry}", "evolve.filters: \"sorry\" should be a valid list"),
    ("evaluate: {k: [1, 10], n_samples: 5}", "evaluate.k: [1, 10] should not exceed evaluate.n_samples (5): pass@10 needs 10 samples per problem"),
    ("evolver: {retry_base_delay: 5, retry_max_delay: 2}",
     "evolver.retry_max_delay: 2 should be at least evolver.retry_base_delay (5.0)"),
])
def test_each_bad_param_gets_one_line_naming_file_key_and_value(tmp_path, text, line):
    assert problems(write(tmp_path, text + "\n")) == [f"params.yaml: {line}"]


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    path = write(tmp_path, """\
        round: 4
        evolver:
          max_concurrency: 0
        eliminate:
          near_dedup_threshold: 1.5
        """)
    assert sorted(problems(path)) == [
        "params.yaml: eliminate.near_dedup_threshold: 1.5 should be less than or equal to 1",
        "params.yaml: evolver.max_concurrency: 0 should be greater than or equal to 1",
        "params.yaml: round: unknown key (value 4); did you mean 'rounds'?",
    ]


def test_empty_and_missing_groups_take_their_defaults(tmp_path):
    params = read_params(write(tmp_path, "rounds: 1\nsft:\n"))
    assert params.sft.learning_rate == 2e-5 and params.evaluate.benchmarks == ["humaneval", "mbpp"]


def test_wrong_type_and_unknown_key_name_the_dotted_key():
    with pytest.raises(ParamsError, match=r'^params.yaml: evolver.max_concurrency: "many" should be a valid integer$'):
        parse_group(EvolverConfig, {"max_concurrency": "many"}, "evolver")
    with pytest.raises(ParamsError, match=r"evolver.modle: unknown key .*did you mean 'mode' or 'model'"):
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


def test_a_stage_prints_one_line_per_problem_and_exits_non_zero(tmp_path):
    write(tmp_path, "round: 4\nevolver: {max_concurrency: 0}\n")
    code, err = finish_stage("merge_shuffle", tmp_path)
    assert code == 1
    assert err.splitlines() == [
        "merge_shuffle: error: params.yaml: evolver.max_concurrency: 0 should be greater than or equal to 1",
        "merge_shuffle: error: params.yaml: round: unknown key (value 4); did you mean 'rounds'?",
    ]


def test_dvc_set_param_writes_floats_the_stages_read(tmp_path, shipped):
    """What `dvc exp run -S sft.learning_rate=3e-5` does to params.yaml (DVC's own code), then the schema."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(shipped, path)
    apply_overrides(path, ["sft.learning_rate=3e-5", "evolver.rpm=100", "rounds=4"])
    text = path.read_text()
    assert "learning_rate: 3e-05" in text and "# The paper's settings" in text  # DVC's spelling, comments kept
    params = read_params(path)
    assert params.sft.learning_rate == 3e-5 and params.evolver.rpm == 100.0 and params.rounds == 4


@pytest.mark.slow
def test_dvc_exp_run_set_param_learning_rate(tmp_path, shipped):
    """The real `dvc exp run -S sft.learning_rate=3e-5` in a git+DVC project, whose stage reads the
    value through the schema."""
    def sh(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    shutil.copy(shipped, tmp_path / "params.yaml")
    reader = "from evolinstruct.core.params import read_params; print(repr(read_params().sft.learning_rate))"
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"lr": {
        "cmd": f'{sys.executable} -c "{reader}" > lr.txt', "params": ["sft.learning_rate"], "outs": ["lr.txt"]}}}))
    dvc = str(Path(sys.executable).parent / "dvc")
    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@example.invalid")
    sh("git", "config", "user.name", "t")
    sh(dvc, "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    sh(dvc, "exp", "run", "-S", "sft.learning_rate=3e-5")
    assert "learning_rate: 3e-05" in (tmp_path / "params.yaml").read_text()
    assert (tmp_path / "lr.txt").read_text().strip() == "3e-05"


def evol(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_demo_set_is_checked_by_the_same_schema(tmp_path, source):
    result = evol("demo", "--dir", str(tmp_path / "demo"), "--source", str(source), "--set", "nosuch.key=1")
    assert result.exit_code == 1
    assert result.output.startswith("evol: error: --set: nosuch: unknown key (value {\"key\": 1}); known keys: rounds")
    result = evol("demo", "--dir", str(tmp_path / "demo"), "--source", str(source), "--set", "sft.lerning_rate=1e-4")
    assert result.output == "evol: error: --set: sft.lerning_rate: unknown key (value 0.0001); did you mean 'learning_rate'?\n"
    assert not (tmp_path / "demo").exists()  # refused before anything is built


def test_demo_profile_and_overrides_merge_and_validate(shipped):
    base = load_params(shipped)
    profile = yaml.safe_load((REPO / "profiles/demo.yaml").read_text())
    merged = validate_layers([("params.yaml", base), ("profiles/demo.yaml", profile),
                              ("--set", {"sft": {"learning_rate": 3e-5}})])
    assert merged["evolver"]["backend"] == "transformers" and merged["evolver"]["top_p"] == base["evolver"]["top_p"]
    assert merged["sft"]["learning_rate"] == 3e-5 and merged == deep_merge(deep_merge(base, profile), merged)


def test_estimate_and_evol_params_use_the_same_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "rounds: 1\nevolver: {max_concurrency: 0}\n")
    for command in (["estimate"], ["params"]):
        result = evol(*command)
        assert result.exit_code == 1, command
        assert result.output == "evol: error: params.yaml: evolver.max_concurrency: 0 should be greater than or equal to 1\n"
    write(tmp_path, "rounds: 1\n")
    assert evol("params").output == "params.yaml: ok\n"


def test_lr_scheduler_choices_are_transformers_schedules():
    import typing

    from transformers import SchedulerType

    assert set(typing.get_args(schema.LR_SCHEDULERS)) <= {s.value for s in SchedulerType}


def test_docs_params_table_is_generated_from_the_schema():
    assert (REPO / "docs/params.md").read_text() == params_markdown(), (
        "docs/params.md is out of date: run `evol params --markdown > docs/params.md`")
    for name, model in schema.GROUPS.items():  # every key of every group has a row and a description
        for key, field in model.model_fields.items():
            assert f"| `{name}.{key}` |" in params_markdown() and field.description, f"{name}.{key}"


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "evolver:\n  top_p: [1\n")
    assert problems(path) == ["params.yaml: line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'"]


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    path = write(tmp_path, "sft:\n  packing: true\n  learning_rate: 2e-5\n  packing: false\n")
    with pytest.raises(ParamsError, match=r"params.yaml: line 4, column 3: invalid YAML: the key 'packing' appears twice"):
        read_params(path)
