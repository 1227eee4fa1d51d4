"""Answer benchmark prompts with the fine-tuned model: vLLM when it is installed and a GPU is
there (`evaluate.engine: auto`), batched transformers otherwise. Both honour the same sampling
settings and stop sequences, so the engine changes the speed, not the protocol."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evolinstruct.core.errors import EvolError


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    batch_size: int = 8
    seed: int = 0


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the earliest stop sequence (which is dropped), as vLLM and the APIs do."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


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

    def generate(self, prompts: Sequence[str], settings: GenerationSettings, on_batch=None) -> list[str]:
        """One answer per prompt, cut at the stop sequences; `on_batch(n)` reports progress."""
        if self.engine == "vllm":
            from vllm import SamplingParams

            params = SamplingParams(
                temperature=settings.temperature, top_p=settings.top_p if settings.temperature > 0 else 1.0,
                max_tokens=settings.max_new_tokens, stop=list(settings.stop) or None, seed=settings.seed,
            )
            outputs = self._load().generate(list(prompts), params)
            if on_batch:
                on_batch(len(prompts))
            return [out.outputs[0].text for out in outputs]
        from evolinstruct.llm import hf

        model, tokenizer = self._load()
        answers: list[str] = []
        for start in range(0, len(prompts), settings.batch_size):
            chunk = prompts[start : start + settings.batch_size]
            generated = hf.generate(model, tokenizer, chunk, settings.max_new_tokens, settings.temperature,
                                    settings.top_p, batch_size=settings.batch_size, seed=settings.seed + start)
            answers += [cut_at_stops(g.text, settings.stop) for g in generated]
            if on_batch:
                on_batch(len(chunk))
        return answers
