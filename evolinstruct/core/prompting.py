"""The fine-tuning and evaluation prompt (WizardCoder, arXiv 2306.08568): Alpaca style, no-input variant."""

from __future__ import annotations

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
    "\n"
    "### Instruction:\n"
    "{instruction}\n"
    "\n"
    "### Response:"
)


def alpaca_prompt(instruction: str) -> str:
    """The paper's Alpaca prompt (no-input variant) around `instruction`, as fine-tuning and
    evaluation use it: a benchmark's default prompt wraps its ``instruction(problem)`` in it."""
    return ALPACA_PROMPT.replace("{instruction}", instruction)
