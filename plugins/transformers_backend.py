"""Built-in local backend: a transformers causal LM (a local folder or a hub id at a pinned revision),
with batched generation. Instruct models with a chat template get the prompt as a user message.

Sampling is seeded per prompt (`hf.prompt_seed`, `hf.row_sampler`), so a prompt's text does not
depend on which prompts share its batch: an interrupted and resumed run, whose batches differ,
writes the same bytes as an uninterrupted one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from evolinstruct.api import Backend, Completion, Control, EvolverConfig, Sampling, hf, hookimpl


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, config: EvolverConfig) -> None:
        super().__init__(config)
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def check_ready(self) -> None:
        """A missing local model folder, or a hub model not cached while HF_HUB_OFFLINE=1, stops the
        stage before any work (never tried on the hub)."""
        hf.check_source("evolver.model", self.config.model, self.config.revision)

    def _model(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                hf.quiet_transformers()
                tokenizer = hf.load_tokenizer(self.config.model, self.config.revision)
                model = hf.load_model(self.config.model, self.config.revision, self.config.device)
                self._loaded = (model, tokenizer)
            return self._loaded

    def _format(self, tokenizer: Any, prompt: str, system: str = "") -> str:
        if getattr(tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{prompt}" if system else prompt

    async def complete_many(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        on_done: Callable[[int, Completion | BaseException], None],
        control: Control | None = None,
    ) -> None:
        """Generate on the local device in batches of `evolver.batch_size`; `control` (rate limits,
        retries, budget) is for API backends and does not apply here."""

        def run() -> None:
            model, tokenizer = self._model()
            size = max(1, self.config.batch_size)
            # Batches are handed back as they finish, so the caller caches each before the next.
            for start in range(0, len(prompts), size):
                chunk = [self._format(tokenizer, p, getattr(sampling, "system", "")) for p in prompts[start : start + size]]
                try:
                    outs = hf.generate(
                        model, tokenizer, chunk, sampling.max_tokens, sampling.temperature, sampling.top_p,
                        batch_size=size, row_seeds=[hf.prompt_seed(p) for p in chunk],
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
