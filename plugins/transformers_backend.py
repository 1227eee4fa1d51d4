"""Built-in local backend: a transformers causal LM (a local folder or a hub id at a pinned revision),
with batched generation. Instruct models with a chat template get the prompt as a user message."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from evolinstruct.llm.backends import Backend, Completion, EvolverConfig, Sampling
from evolinstruct.llm.dispatch import Control
from evolinstruct.hookspecs import hookimpl


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: EvolverConfig) -> None:
        super().__init__(config)
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _model(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                from evolinstruct.llm import hf

                hf.quiet_transformers()
                tokenizer = hf.load_tokenizer(self.config.model, self.config.revision)
                model = hf.load_model(self.config.model, self.config.revision, self.config.device)
                self._loaded = (model, tokenizer)
            return self._loaded

    def _format(self, tokenizer: Any, prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    async def complete_many(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        on_done: Callable[[int, Completion | BaseException], None],
        control: Control | None = None,
    ) -> None:
        """Generate on the local device in batches of `evolver.batch_size`; `control` (rate limits,
        retries, budget) is for API backends and does not apply here."""
        from evolinstruct.llm import hf

        def run() -> None:
            model, tokenizer = self._model()
            size = max(1, self.config.batch_size)
            # Batches are handed back as they finish, so the caller caches each before the next.
            for start in range(0, len(prompts), size):
                chunk = [self._format(tokenizer, p) for p in prompts[start : start + size]]
                try:
                    outs = hf.generate(
                        model, tokenizer, chunk, sampling.max_tokens, sampling.temperature, sampling.top_p,
                        batch_size=size, seed=start,
                    )
                except Exception as exc:
                    for i in range(len(chunk)):
                        on_done(start + i, exc)
                    continue
                for i, out in enumerate(outs):
                    on_done(start + i, Completion(out.text, out.finish_reason, out.prompt_tokens, out.completion_tokens))

        await asyncio.to_thread(run)


@hookimpl
def register_backends(register):
    register(TransformersBackend)
