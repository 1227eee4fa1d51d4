"""Test doubles. They live in tests/ only; the product uses real backends."""

from __future__ import annotations

from evolinstruct.llm.backends import Backend, Completion, EvolverConfig, Sampling


class ScriptedBackend(Backend):
    """Answers by rules over the prompt, and counts what it was asked (to prove nothing is paid twice)."""

    name = "scripted"

    def __init__(self, config: EvolverConfig | None = None, fail_on: str = "", judge: str = "Not Equal") -> None:
        super().__init__(config or EvolverConfig(backend="scripted", model="script-1", max_retries=2, retry_base_delay=0.001))
        self.fail_on, self.judge, self.prompts = fail_on, judge, []

    async def complete(self, prompt: str, sampling: Sampling) -> Completion:
        self.prompts.append(prompt)
        if self.fail_on and self.fail_on in prompt:
            raise TimeoutError("simulated timeout after all retries")
        if prompt.startswith("Here are two Instructions"):
            return Completion(self.judge, prompt_tokens=50, completion_tokens=2)
        if prompt.startswith("Please increase the difficulty"):
            question = prompt.rsplit("\n\n", 1)[1]
            return Completion(f"{question} Handle empty input.", prompt_tokens=60, completion_tokens=12)
        if "sorry" in prompt.lower():
            return Completion("Sorry, I cannot do that.", prompt_tokens=10, completion_tokens=6)
        return Completion(f"def solution():\n    # answers: {prompt[:30]}\n    return 42", prompt_tokens=10, completion_tokens=20)
