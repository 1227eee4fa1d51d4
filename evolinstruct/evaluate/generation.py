"""Answer benchmark prompts with the fine-tuned model: vLLM when it is installed and a GPU is
there (`evaluate.engine: auto`), transformers otherwise. Both honour the same sampling settings
and stop sequences, so the engine changes the speed, not the protocol.

Samples. `n` samples of one prompt are `n` distinct sampling draws on every engine, and a rerun
with the same seed gives the same samples:

* vLLM: one request per problem with `SamplingParams(n=...)` and a seed derived from (run seed,
  task id), so the request's n draws differ from each other and are the same on a rerun;
* transformers: the n samples are n rows of the batch, each drawing its noise from a generator of
  its own, seeded from (run seed, task id, sample index); so a task's samples are the same whatever
  the batch size (which follows free memory on a GPU) and whichever other problems are in the run.

Length. As in the published scripts (`max_length=2048`), `max_length` bounds prompt + answer
tokens per row; `max_new_tokens` bounds the answer alone when `max_length` is 0.

Speed on transformers (`fast_generate`): prompts are sorted by length so a batch pads little;
the batch size follows free memory unless set; finished rows (EOS, a stop string, or the token
limit) leave the batch, and once half of it has left the next prompts are prefilled and join it
(continuous batching: their KV cache left-padded to the batch's length), so the number of steps
follows the total length of the answers, not the longest answer of each batch; stop strings are
checked per row on the model's device (transformers' `StopStringCriteria`, no full-batch decode
per step). On a GPU with `compile: true` (the default there), batches run through transformers'
`generate` with a static KV cache and `torch.compile` instead: fixed shapes are what compiled
graphs need, and they outrun row eviction when the rows of a batch end at similar times.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evolinstruct.core.errors import EvolError


@dataclass(frozen=True)
class GenerationSettings:
    #: Tokens per answer, when `max_length` is 0.
    max_new_tokens: int = 2048
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    #: Rows per batch on transformers; 0 = chosen from free memory.
    batch_size: int = 0
    seed: int = 0
    #: Samples per prompt.
    n: int = 1
    #: Static KV cache + torch.compile on transformers: "auto" (on a GPU), "true" or "false".
    compile: str = "auto"
    #: Prompt + answer tokens per row (the published scripts' `max_length=2048`); 0 = `max_new_tokens` bounds.
    max_length: int = 0

    def new_tokens(self, prompt_tokens: int) -> int:
        """The answer's token budget for a prompt of `prompt_tokens` tokens (at least one)."""
        if self.max_length:
            return max(1, self.max_length - prompt_tokens)
        return self.max_new_tokens


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the earliest stop sequence (which is dropped), as vLLM and the APIs do."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def sample_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from the run seed and a key (a task id): stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def pick_engine(engine: str) -> str:
    """"vllm" or "transformers" for `evaluate.engine` (auto: vLLM when installed and CUDA is there)."""
    if engine not in ("auto", "vllm", "transformers"):
        raise EvolError(f"params.yaml: evaluate.engine: expected auto, vllm or transformers, got {engine!r}")
    if engine != "auto":
        if engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise EvolError("params.yaml: evaluate.engine: vllm is not installed", "pip install vllm, or use auto")
        return engine
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


class Generator:
    """Loads the model once and answers prompts; see `pick_engine`."""

    def __init__(self, model_path: str, engine: str = "auto", device: str = "auto") -> None:
        self.engine = pick_engine(engine)
        self.model_path, self.device = model_path, device
        self._loaded: Any = None

    def _load(self) -> Any:
        if self._loaded is None:
            if self.engine == "vllm":
                from vllm import LLM

                self._loaded = LLM(model=self.model_path)
            else:
                from evolinstruct.llm import hf

                hf.quiet_transformers()
                self._loaded = (hf.load_model(self.model_path, device=self.device), hf.load_tokenizer(self.model_path))
        return self._loaded

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, keys: Sequence[str] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[list[str]]:
        """`settings.n` answers per prompt (a list per prompt), cut at the stop sequences.

        `keys` (task ids, one per prompt) seed each prompt's draws on vLLM; `on_batch(k)` reports k
        answers done."""
        keys = list(keys) if keys is not None else [str(i) for i in range(len(prompts))]
        if self.engine == "vllm":
            return vllm_generate(self._load(), prompts, keys, settings, on_batch)
        model, tokenizer = self._load()
        copies = 1 if settings.temperature == 0 else settings.n  # greedy: n equal answers, computed once
        rows = [p for p in prompts for _ in range(copies)]
        seeds = [sample_seed(settings.seed, f"{key}/{j}") for key in keys for j in range(copies)]
        report = (lambda k: on_batch(k * settings.n // copies)) if on_batch else None
        texts = fast_generate(model, tokenizer, rows, settings, on_done=report, seeds=seeds)
        return [[cut_at_stops(texts[i * copies + (j % copies)], settings.stop) for j in range(settings.n)]
                for i in range(len(prompts))]


def vllm_generate(llm: Any, prompts: Sequence[str], keys: Sequence[str], settings: GenerationSettings,
                  on_batch: Callable[[int], None] | None = None) -> list[list[str]]:
    """One vLLM request per prompt with `SamplingParams(n=...)` and a per-task seed: n distinct
    draws per problem, the same ones on a rerun. Greedy asks once and repeats the answer n times."""
    from vllm import SamplingParams

    greedy = settings.temperature == 0
    if settings.max_length:
        tokenizer = llm.get_tokenizer()
        budgets = [settings.new_tokens(len(tokenizer(p)["input_ids"])) for p in prompts]
    else:
        budgets = [settings.max_new_tokens] * len(prompts)
    params = [
        SamplingParams(
            n=1 if greedy else settings.n, temperature=settings.temperature,
            top_p=1.0 if greedy else settings.top_p, max_tokens=budget,
            stop=list(settings.stop) or None, seed=sample_seed(settings.seed, key),
        )
        for key, budget in zip(keys, budgets, strict=True)
    ]
    outputs = llm.generate(list(prompts), params)
    if on_batch:
        on_batch(len(prompts) * settings.n)
    answers = []
    for out in outputs:
        texts = [o.text for o in out.outputs]
        answers.append([cut_at_stops(texts[j % len(texts)], settings.stop) for j in range(settings.n)])
    return answers


def auto_batch_size(model: Any, prompt_tokens: int, max_new_tokens: int) -> int:
    """Rows per batch from free accelerator memory: 80% of it over the KV cache of one row at its
    longest (prompt + new tokens), capped at 256. 64 on CPU (the answers do not depend on it): rows leave the batch when they end,
    so a large batch costs little, and fewer steps save the per-step overhead."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return 64
    free, _ = torch.cuda.mem_get_info(device)
    config = model.config
    layers = getattr(config, "num_hidden_layers", 24)
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", 16)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_row = 2 * layers * heads * head_dim * next(model.parameters()).element_size() * (prompt_tokens + max_new_tokens)
    return max(1, min(256, int(free * 0.8) // max(1, per_row)))


def fast_generate(model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings,
                  on_done: Callable[[int], None] | None = None, stats: dict[str, int] | None = None,
                  seeds: Sequence[int] | None = None) -> list[str]:
    """One completion per prompt (stop strings included; the caller cuts them). See the module
    docstring for what makes it fast. `seeds` (one per prompt; default: from the run seed and the
    prompt's position) seed each row's own sampling generator. `stats["new_tokens"]` (when given)
    counts the tokens generated."""
    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    device = next(model.parameters()).device
    compiled = settings.compile == "true" or (settings.compile == "auto" and device.type == "cuda")
    limits = [settings.new_tokens(n) for n in lengths]
    batch = settings.batch_size or auto_batch_size(model, max(lengths, default=1), max(limits, default=1))
    seeds = list(seeds) if seeds is not None else [sample_seed(settings.seed, str(i)) for i in range(len(prompts))]
    generators = ([torch.Generator(device=device).manual_seed(int(s)) for s in seeds] if settings.temperature > 0
                  else [None] * len(prompts))
    stopper = _stop_criteria(tokenizer, settings.stop)
    results: list[str] = [""] * len(prompts)

    def finish(done: dict[int, list[int]]) -> None:
        for i, tokens in done.items():
            results[i] = tokenizer.decode(tokens, skip_special_tokens=True)
        if stats is not None:
            stats["new_tokens"] = stats.get("new_tokens", 0) + sum(len(t) for t in done.values())
        if on_done:
            on_done(len(done))

    if not compiled:
        _continuous(model, tokenizer, prompts, order, max(1, batch), settings, generators, limits, stopper, finish)
        return results
    for start in range(0, len(order), max(1, batch)):
        chunk = order[start : start + batch]
        # Compiled graphs are specialised to shapes: prompt widths come in steps of 64 tokens, so a
        # run compiles a few times, not once per batch.
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                            pad_to_multiple_of=64).to(device)
        tokens = _compiled_batch(model, tokenizer, encoded, settings, [seeds[i] for i in chunk],
                                 max(limits[i] for i in chunk), stopper)
        finish({i: row[: limits[i]] for i, row in zip(chunk, tokens, strict=True)})
    return results


def _stop_criteria(tokenizer: Any, stops: Sequence[str]) -> Any:
    stops = [s for s in stops if s]
    if not stops:
        return None
    from transformers.generation.stopping_criteria import StopStringCriteria

    return StopStringCriteria(tokenizer, stops)


def _next_tokens(logits: Any, settings: GenerationSettings, generators: Sequence[Any]) -> Any:
    """Greedy argmax, or a top-p sample per row, each row drawing from its own generator (so a
    row's draws do not depend on its batch mates)."""
    import torch

    if settings.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, indices = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > settings.top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, indices, sorted_probs)
    return torch.cat([torch.multinomial(probs[row : row + 1], 1, generator=generator).view(1)
                      for row, generator in enumerate(generators)])


def _left_pad(tensor: Any, width: int, dim: int, value: float = 0) -> Any:
    """`tensor` padded on the left of `dim` to `width`."""
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_full(shape, value), tensor], dim=dim)


def _join_caches(old: Any, new: Any) -> bool:
    """Append `new`'s rows to `old` (a DynamicCache), left-padding the shorter one's sequence so
    both end at the same position (the masks pad the same way). False when the cache type keeps its
    tensors elsewhere (then no row joins a running batch)."""
    import torch

    if not (hasattr(old, "layers") and hasattr(new, "layers")) or len(old.layers) != len(new.layers):
        return False
    if not all(hasattr(layer, "keys") for layer in (*old.layers, *new.layers)):
        return False
    width = max(old.get_seq_length(), new.get_seq_length())
    for mine, theirs in zip(old.layers, new.layers, strict=True):
        mine.keys = torch.cat([_left_pad(mine.keys, width, -2), _left_pad(theirs.keys, width, -2)])
        mine.values = torch.cat([_left_pad(mine.values, width, -2), _left_pad(theirs.values, width, -2)])
    return True


def _continuous(model: Any, tokenizer: Any, prompts: Sequence[str], order: Sequence[int], batch: int,
                settings: GenerationSettings, generators: Sequence[Any], limits: Sequence[int], stopper: Any,
                finish: Callable[[dict[int, list[int]]], None]) -> None:
    """Decode every prompt of `order` with a dynamic KV cache, at most `batch` rows at a time. A
    row that ends (EOS, a stop string, its token limit) leaves the batch at once; when half the
    batch has left, the next prompts are prefilled and join it (continuous batching), so the
    number of decoding steps follows the total of the answers' lengths, not the longest of each
    batch. `finish({prompt index: new tokens})` is called as rows end."""
    import collections

    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    accepts = inspect.signature(model.forward).parameters
    cache_key = "cache" if "cache" in accepts else "past_key_values"
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
    pending = collections.deque(order)
    joinable = True
    budget = torch.tensor(list(limits), dtype=torch.long, device=device)

    def prefill(count: int) -> tuple[Any, ...]:
        take = [pending.popleft() for _ in range(min(count, len(pending)))]
        encoded = tokenizer([prompts[i] for i in take], return_tensors="pt", padding=True).to(device)
        mask = encoded["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions,
                       **{cache_key: cache}, use_cache=True, **keep_last).logits[:, -1]
        rows = torch.tensor(take, device=device)
        return rows, cache, mask, positions[:, -1], logits

    with torch.inference_mode():
        active, cache, mask, position, logits = prefill(batch)
        generated = mask.new_empty((len(active), 0))
        counts = torch.zeros(len(active), dtype=torch.long, device=device)
        while True:
            token = _next_tokens(logits, settings, [generators[i] for i in active.tolist()])
            generated = torch.cat([generated, token[:, None]], dim=1)
            counts += 1
            finished = counts >= budget[active]
            if eos is not None:
                finished |= token == eos
            if stopper is not None:
                finished |= stopper(generated, None).to(finished.device)
            if bool(finished.any()):
                done = {}
                for row in torch.nonzero(finished).flatten().tolist():
                    tokens = generated[row, generated.shape[1] - int(counts[row]):].tolist()
                    done[int(active[row])] = tokens[:-1] if eos is not None and tokens[-1] == eos else tokens
                finish(done)
                keep = torch.nonzero(~finished).flatten()
                cache.batch_select_indices(keep)
                active, generated, mask, position, token, counts = (
                    active[keep], generated[keep], mask[keep], position[keep], token[keep], counts[keep])
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            position = position + 1
            if len(active):
                logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None],
                               **{cache_key: cache}, use_cache=True).logits[:, -1]
            if pending and (not len(active) or (joinable and len(active) <= batch // 2)):
                rows, fresh, fresh_mask, fresh_position, fresh_logits = prefill(batch - len(active))
                if not len(active):
                    active, cache, mask, position, logits = rows, fresh, fresh_mask, fresh_position, fresh_logits
                    generated = mask.new_empty((len(active), 0))
                    counts = torch.zeros(len(active), dtype=torch.long, device=device)
                    continue
                width = max(mask.shape[1], fresh_mask.shape[1])
                joinable = _join_caches(cache, fresh)
                if not joinable:  # give the rows back; they start when this batch has ended
                    pending.extendleft(reversed(rows.tolist()))
                    continue
                mask = torch.cat([_left_pad(mask, width, 1), _left_pad(fresh_mask, width, 1)])
                generated = torch.cat([generated, _left_pad(generated.new_full((len(rows), 0), pad or 0),
                                                            generated.shape[1], 1, pad or 0)])
                active = torch.cat([active, rows])
                position = torch.cat([position, fresh_position])
                counts = torch.cat([counts, torch.zeros(len(rows), dtype=torch.long, device=device)])
                logits = torch.cat([logits, fresh_logits])
            elif not len(active):
                return


def _compiled_batch(model: Any, tokenizer: Any, encoded: Any, settings: GenerationSettings, seeds: Sequence[int],
                    max_new_tokens: int, stopper: Any) -> list[list[int]]:
    """A GPU batch through transformers' `generate` with a static KV cache, the forward pass
    compiled once (`torch.compile`), and stop strings checked on the device. Sampling draws each
    row from its own seeded stream (`hf.row_sampler`), so the batch does not change a row's draws."""
    import torch
    import transformers

    compile_kwargs: dict[str, Any] = {}
    if hasattr(transformers, "CompileConfig"):  # generate compiles the forward pass itself (static cache)
        compile_kwargs["compile_config"] = transformers.CompileConfig(fullgraph=True, mode="reduce-overhead")
    elif not getattr(model, "_evol_compiled", False):
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        model._evol_compiled = True
    sampling: dict[str, Any] = {"do_sample": False}
    if settings.temperature > 0:
        from transformers import LogitsProcessorList

        from evolinstruct.llm.hf import row_sampler

        sampling["logits_processor"] = LogitsProcessorList([row_sampler(seeds, settings.temperature, settings.top_p)])
    extra = {"stop_strings": list(settings.stop), "tokenizer": tokenizer} if stopper is not None else {}
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=max_new_tokens, cache_implementation="static",
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             **sampling, **extra, **compile_kwargs)
    width = encoded["input_ids"].shape[1]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    tokens = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in (eos, pad)), len(row))
        tokens.append(row[:cut])
    return tokens
