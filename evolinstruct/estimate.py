"""`evol estimate`: what the configured evolve stage will send and cost, before anything is paid.

Round 1 is computed from the real prompts (the seed data, the drawn heuristic per record, the
templates), including how many are already answered in the request cache. Later rounds cannot be
known before the answers exist, so they are projected: each evolution is assumed to lengthen its
instruction by `growth` (WizardCoder's instructions grow by roughly a third per round) and every
evolution to survive the free filters (the judge is counted for all: an upper bound). Tokens are
estimated at four characters per token. The worst case assumes every answer uses `max_tokens`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from evolinstruct.core import paths
from evolinstruct.llm.backends import EvolverConfig, Sampling
from evolinstruct.llm.cost import price_for
from evolinstruct.llm.dispatch import estimate_tokens
from evolinstruct.core.errors import EvolError
from evolinstruct.evolve.filters import Candidate
from evolinstruct.evolve.heuristics import draw
from evolinstruct.core.params import load_params, parse_group, read_rounds
from evolinstruct.core.records import read_records
from evolinstruct.registry import get_registry
from evolinstruct.llm.request_cache import RequestCache, cache_path, request_key


@dataclass
class RoundEstimate:
    round: int
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    worst_completion_tokens: int = 0
    cost_usd: float | None = None
    worst_cost_usd: float | None = None


@dataclass
class Estimate:
    backend: str
    model: str
    mode: str
    seeds: int
    rounds: list[RoundEstimate] = field(default_factory=list)
    price_known: bool = True
    budget_usd: float = 0.0

    def total(self) -> RoundEstimate:
        total = RoundEstimate(round=0)
        for r in self.rounds:
            for key in ("requests", "cached", "prompt_tokens", "completion_tokens", "worst_completion_tokens"):
                setattr(total, key, getattr(total, key) + getattr(r, key))
        if self.price_known:
            total.cost_usd = sum(r.cost_usd or 0.0 for r in self.rounds)
            total.worst_cost_usd = sum(r.worst_cost_usd or 0.0 for r in self.rounds)
        return total

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "model": self.model, "mode": self.mode, "seeds": self.seeds,
                "budget_usd": self.budget_usd, "price_known": self.price_known,
                "rounds": [asdict(r) for r in self.rounds], "total": asdict(self.total())}


def estimate(params_path: Path = Path("params.yaml"), seed_path: Path = paths.SEED, growth: float = 1.3) -> Estimate:
    """Estimate the evolve stage configured by `params_path` over the seed records in `seed_path`."""
    from evolinstruct.stages.evolve import EvolveParams, heuristics_for

    data = load_params(params_path)
    rounds = read_rounds(params_path)
    config = parse_group(EvolverConfig, data.get("evolver"), "evolver", str(params_path))
    params = parse_group(EvolveParams, data.get("evolve"), "evolve", str(params_path))
    if not seed_path.exists():
        raise EvolError(f"{seed_path}: not found; the estimate is computed from the seed data",
                        "run `dvc repro seed` first (it sends no request and costs nothing)")
    seeds = read_records(seed_path)
    registry = get_registry()
    heuristics = heuristics_for(params)
    filters = [registry.pick("filter", name) for name in params.filters]
    sampling = Sampling.from_config(config)
    discount = config.batch_discount if config.mode == "batch" else 1.0
    price = price_for(config.prices, config.model, discount)
    result = Estimate(config.backend, config.model, config.mode, len(seeds), price_known=price is not None,
                      budget_usd=config.budget_usd)
    location = cache_path(config.cache)
    cache = RequestCache(location) if location.exists() else None
    answer_tokens = [min(estimate_tokens(s.output), sampling.max_tokens) for s in seeds]
    instructions = [s.instruction for s in seeds]
    try:
        for k in range(1, rounds + 1):
            r = RoundEstimate(round=k)
            for parent, instruction, answer in zip(seeds, instructions, answer_tokens, strict=True):
                prompt = draw(heuristics, params.weights, params.seed, parent.id, k).render(instruction)
                evolved = instruction + " " + "x" * int(len(instruction) * (growth - 1))
                requests = [(prompt, estimate_tokens(evolved)), (evolved, answer)]
                candidate = Candidate(instruction, evolved, "y" * 4 * answer, "stop")
                for f in filters:
                    if (question := f.judge_prompt(candidate)) is not None:
                        requests.append((question, 3))  # verdicts are a word or two
                for n, (text, out_tokens) in enumerate(requests):
                    r.requests += 1
                    r.prompt_tokens += estimate_tokens(text)
                    r.completion_tokens += out_tokens
                    r.worst_completion_tokens += sampling.max_tokens
                    if k == 1 and n == 0 and cache is not None:  # round-1 evolutions are known exactly
                        r.cached += cache.get(request_key(config.backend, config.model, sampling, text, k)) is not None
            if price is not None:
                r.cost_usd = price.cost(r.prompt_tokens, r.completion_tokens)
                r.worst_cost_usd = price.cost(r.prompt_tokens, r.worst_completion_tokens)
            result.rounds.append(r)
            instructions = [i + " " + "x" * int(len(i) * (growth - 1)) for i in instructions]
    finally:
        if cache is not None:
            cache.close()
    return result


def render(est: Estimate) -> str:
    """The estimate as a table, one row per round and a total."""
    def money(value: float | None) -> str:
        return "?" if value is None else f"${value:,.2f}"

    lines = [f"evolve: {est.seeds} seeds x {len(est.rounds)} rounds with {est.backend}:{est.model} ({est.mode} mode)",
             f"{'round':>5} {'requests':>9} {'cached':>7} {'input tok':>11} {'output tok':>11} {'cost':>10} {'worst':>10}"]
    for r in [*est.rounds, est.total()]:
        label = "total" if r.round == 0 else str(r.round)
        lines.append(f"{label:>5} {r.requests:>9,} {r.cached:>7,} {r.prompt_tokens:>11,} {r.completion_tokens:>11,} "
                     f"{money(r.cost_usd):>10} {money(r.worst_cost_usd):>10}")
    if not est.price_known:
        lines.append(f"no price for model '{est.model}': add evolver.prices.{est.model}: {{input: ..., output: ...}} "
                     "(USD per million tokens) to params.yaml")
    total = est.total()
    if est.budget_usd and total.worst_cost_usd is not None and total.worst_cost_usd > est.budget_usd:
        lines.append(f"evolver.budget_usd {est.budget_usd:.2f} may stop the run before it ends (worst case "
                     f"{money(total.worst_cost_usd)})")
    lines.append("Round 1 is computed from the real prompts; later rounds assume instructions grow ~30% per round "
                 "and every evolution reaches the judge. Tokens ~ characters / 4. Cached requests are not paid again.")
    return "\n".join(lines)
