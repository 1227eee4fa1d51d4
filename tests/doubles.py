"""Test doubles. They live in tests/ only; the product uses real backends. The scripted backend is
the one plugin authors get from `evolinstruct.api` (evolinstruct.testing), with this suite's script."""

from __future__ import annotations

from evolinstruct.llm.backends import Completion, EvolverConfig
from evolinstruct.testing import ScriptedBackend as _ScriptedBackend


class ScriptedBackend(_ScriptedBackend):
    """Answers by rules over the prompt, and counts what it was asked (to prove nothing is paid twice)."""

    def __init__(self, config: EvolverConfig | None = None, fail_on: str = "", judge: str = "Not Equal") -> None:
        super().__init__(config, script=self.answer)
        self.fail_on, self.judge = fail_on, judge

    def answer(self, prompt: str, request: object) -> Completion | BaseException:
        if self.fail_on and self.fail_on in prompt:
            return TimeoutError("simulated timeout after all retries")
        if prompt.startswith("Here are two Instructions"):
            return Completion(self.judge, prompt_tokens=50, completion_tokens=2)
        if prompt.startswith("Please increase the difficulty"):
            question = prompt.rsplit("\n\n", 1)[1]
            return Completion(f"{question} Handle empty input.", prompt_tokens=60, completion_tokens=12)
        if "sorry" in prompt.lower():
            return Completion("Sorry, I cannot do that.", prompt_tokens=10, completion_tokens=6)
        return Completion(f"def solution():\n    # answers: {prompt[:30]}\n    return 42", prompt_tokens=10, completion_tokens=20)
