"""Loading and batched generation with Hugging Face transformers, shared by the transformers
evolver backend, the SFT stage and the evaluate stage.

A model is named by a local folder or a hub id; a hub id should come with a pinned `revision`
(a commit sha) so runs are reproducible. Heavy imports happen here, lazily.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core.errors import EvolError, ParamsError

_TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads its boolean environment variables


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).exists()


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` (or `datasets`' own `HF_DATASETS_OFFLINE`) is set: nothing may be
    fetched from the hub, so a missing model or data set is reported at once instead of being tried
    (and retried) on the network."""
    return any(os.environ.get(v, "").strip().upper() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def looks_like_path(value: str, root: str | os.PathLike[str] = ".") -> bool:
    """Whether a model/data param is meant as a local path rather than a hub id (`owner/name`).

    A value starting with `.`, `/` or `~`, or whose first component is a folder of the project
    (`models/mine`, `data/raw/x.json`), is a path. Trying such a value on the hub only costs
    retries and ends in a misleading "repository not found"."""
    if value.startswith((".", "/", "~")):
        return True
    first = value.replace("\\", "/").split("/", 1)[0]
    return bool(first) and (Path(root) / first).is_dir()


#: The folder each stage depends on in dvc.yaml for the local files a param names: a local model
#: or benchmark file inside it is tracked by content (new weights rerun the stage); outside it,
#: DVC cannot see it change.
DEP_FOLDERS = {"sft.base_model": "models/base", "evolver.model": "models/evolver",
               "eliminate.benchmark_options": "data/benchmarks", "evaluate.benchmark_options": "data/benchmarks"}


def warn_untracked(param: str, path: str | os.PathLike[str]) -> None:
    """Warn when a local file a stage reads lies outside the folder that stage depends on."""
    folder = next((f for key, f in DEP_FOLDERS.items() if param == key or param.startswith(key + ".")), None)
    if folder is None:
        return
    resolved, root = Path(path).expanduser().resolve(), (Path.cwd() / folder).resolve()
    if not resolved.is_relative_to(root):
        logging.getLogger(__name__).warning(
            "%s: %s is outside %s/, which dvc.yaml lists as this stage's dependency, so `dvc repro` does not see "
            "its files change; move it under %s/", param, path, folder, folder)


def check_path(param: str, value: str) -> Path:
    """A param that can only be a local path (e.g. `benchmark_options.<name>.path`): it must exist."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ParamsError("params.yaml", param, f"{value}: no such file or folder",
                          "fix the path (relative paths start at the project folder)")
    return path


def check_source(param: str, value: str, revision: str = "") -> str:
    """Check a model or tokenizer param (`sft.base_model`, `evolver.model`, ...) before anything
    heavy loads: a path must exist, and with `HF_HUB_OFFLINE=1` a hub id must already be in the
    local cache. Returns the value to load (a path with `~` expanded, or the hub id)."""
    if not value:
        raise ParamsError("params.yaml", param, "empty", "give a local folder or a hub id (owner/name)")
    if looks_like_path(value):
        if not Path(value).expanduser().exists():
            raise ParamsError("params.yaml", param, f"{value}: no such folder",
                              "it looks like a local path, so it is not looked up on the Hugging Face hub; "
                              "fix the path, or give a hub id as owner/name")
        warn_untracked(param, value)
        return os.path.expanduser(value)
    if Path(value).exists():  # a folder named like a bare hub id ("gpt2") wins, as in transformers
        warn_untracked(param, value)
        return value
    if hub_offline() and not in_hub_cache(value, revision):
        raise ParamsError("params.yaml", param,
                          f"{value}{'@' + revision if revision else ''} is not in the local Hugging Face cache, "
                          "and HF_HUB_OFFLINE=1 forbids downloading it",
                          "download it once while online, or point the param at a local folder")
    return value


def in_hub_cache(repo_id: str, revision: str = "") -> bool:
    """Whether a hub model's config is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision or None)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def check_option_paths(prefix: str, options: Mapping[str, Mapping[str, Any]]) -> None:
    """Check every `<prefix>.<name>.path` of a benchmark_options mapping up front, so a typo stops
    the stage before models load or other benchmarks run."""
    for name, option in options.items():
        if isinstance(option, Mapping) and option.get("path"):
            param = f"{prefix}.{name}.path"
            warn_untracked(param, check_path(param, str(option["path"])))


def load_hub_dataset(what: str, dataset_id: str, split: str, config: str | None = None,
                     revision: str = "", hint: str = "use a local file") -> list[dict[str, Any]]:
    """The rows of a hub data set, or one line saying why not (`what` names the param or
    benchmark). With `HF_HUB_OFFLINE=1`, `datasets` reads only its cache and fails without retries;
    the line then says that the data set is missing offline."""
    import datasets

    try:
        return list(datasets.load_dataset(dataset_id, config, split=split, revision=revision or None))
    except Exception as exc:
        if hub_offline():
            raise EvolError(f"{what}: hub data set {dataset_id} is not in the local cache, "
                            "and HF_HUB_OFFLINE=1 forbids downloading it",
                            f"load it once while online, or {hint}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EvolError(f"{what}: could not load {dataset_id} from the Hugging Face hub: {type(exc).__name__}: {first}",
                        f"check the id and your network, or {hint}") from None


def revision_kwargs(name_or_path: str, revision: str) -> dict[str, str]:
    """`from_pretrained` arguments pinning a hub model's revision (a local folder has none)."""
    return {"revision": revision} if revision and not is_local(name_or_path) else {}


def load_tokenizer(name_or_path: str, revision: str = "") -> Any:
    from transformers import AutoTokenizer

    name_or_path = os.path.expanduser(name_or_path)  # `~/models/x` is a path, as check_source says
    return AutoTokenizer.from_pretrained(name_or_path, **revision_kwargs(name_or_path, revision))


def load_model(name_or_path: str, revision: str = "", device: str = "auto", dtype: str = "auto") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    name_or_path = os.path.expanduser(name_or_path)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype,
                                                 **revision_kwargs(name_or_path, revision))
    return model.to(device).eval()


@dataclass(frozen=True)
class Generated:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float | None = None,
    batch_size: int = 8,
    seed: int = 0,
    row_seeds: Sequence[int] | None = None,
) -> list[Generated]:
    """Generate one completion per prompt, in length-sorted batches with left padding.

    With `row_seeds` (one per prompt) and temperature > 0, each prompt is sampled from its own
    random stream (`row_sampler`), so its text does not depend on which prompts share its batch;
    otherwise one seed per batch drives the sampling."""
    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generated | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    for start in range(0, len(order), max(1, batch_size)):
        chunk = order[start : start + batch_size]
        batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True).to(device)
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0 and row_seeds is not None:
            processor = row_sampler([row_seeds[i] for i in chunk], temperature, top_p if top_p is not None else 1.0)
            sampling = {"do_sample": False, "logits_processor": [processor], "temperature": None, "top_p": None,
                        "top_k": None}
        elif temperature > 0:
            sampling["temperature"] = temperature
            sampling["top_p"] = top_p if top_p is not None else 1.0
            torch.manual_seed(seed + start)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
                **sampling,
            )
        width = batch["input_ids"].shape[1]
        for row, i in enumerate(chunk):
            new = out[row, width:].tolist()
            ended = eos in new
            if ended:
                new = new[: new.index(eos)]
            results[i] = Generated(
                text=tokenizer.decode(new, skip_special_tokens=True),
                finish_reason="stop" if ended else "length",
                prompt_tokens=int(batch["attention_mask"][row].sum()),
                completion_tokens=len(new) + int(ended),
            )
    return [r for r in results if r is not None]


def row_sampler(seeds: Sequence[int], temperature: float, top_p: float) -> Any:
    """A logits processor that samples each row from its own seeded stream (the Gumbel-max trick:
    the argmax of log-probabilities plus Gumbel noise is a sample from the softmax), so with greedy
    decoding each row's tokens depend on its prompt and seed only, never on its batch mates.
    Temperature and top-p are applied first, as sampling would."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else [])

    class RowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            for warper in warpers:
                scores = warper(input_ids, scores)
            logp = torch.log_softmax(scores.float(), dim=-1)
            uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
            return logp + gumbel.to(logp.device)

    return RowSampler()


def prompt_seed(prompt: str, seed: int = 0) -> int:
    """A per-prompt seed: the same prompt draws the same sample, whatever else is in its batch."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt}".encode()).digest()[:8], "little") & (2**63 - 1)


def quiet_transformers() -> None:
    """Keep stage logs readable: no per-call advisory warnings from transformers."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # DeepSpeed (installed for the sft stage) warns that it fell back to its CPU accelerator each time
    # transformers or accelerate imports it on a machine without a GPU; name the CPU up front.
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
