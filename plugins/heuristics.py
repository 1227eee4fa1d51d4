"""Built-in evolution heuristics: Code Evol-Instruct (WizardCoder) and General Evol-Instruct (WizardLM).

The prompt strings are the method's data and are kept exactly as published, typos included
("I want you act as", "requirments", the stray quote after "#The Given Prompt#'"). Sources:
WizardCoder, arXiv 2306.08568, section 3.1; WizardLM, arXiv 2304.12244, appendix and the
nlpxucan/WizardLM repository (Evol_Instruct/depth.py, breadth.py).
"""

from __future__ import annotations

from evolinstruct.api import Heuristic, hookimpl

# WizardCoder (arXiv 2306.08568), section 3.1: the Code Evol-Instruct prompt template.
CODE_TEMPLATE = (
    "Please increase the difficulty of the given programming test question a bit.\n"
    "\n"
    "You can increase the difficulty using, but not limited to, the following methods:\n"
    "{method}\n"
    "\n"
    "{question}"
)

# The five methods. Method 5 is meant to be used "not frequently": it gets half the weight.
CODE_METHODS = {
    "code_constraints": (
        "Add new constraints and requirements to the original problem, adding approximately 10 additional words.",
        1.0,
    ),
    "code_less_common": (
        "Replace a commonly used requirement in the programming task with a less common and more specific one.",
        1.0,
    ),
    "code_reasoning": (
        "If the original problem can be solved with only a few logical steps, please add more reasoning steps.",
        1.0,
    ),
    "code_erroneous_reference": ("Provide a piece of erroneous code as a reference to increase misdirection.", 1.0),
    "code_complexity": (
        "Propose higher time or space complexity requirements, but please refrain from doing so frequently.",
        0.5,
    ),
}

# WizardLM (arXiv 2304.12244), Evol_Instruct/depth.py: the in-depth base prompt.
DEPTH_TEMPLATE = (
    "I want you act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., chatgpt and GPT4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. "
    "Also, please do not omit the input in #The Given Prompt#. \n"
    "You SHOULD complicate the given prompt using the following method: \n"
    "{method}\n"
    "You should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can only "
    "add 10 to 20 words into #The Given Prompt#. \n"
    "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to "
    "appear in #Rewritten Prompt#\n"
    "#The Given Prompt#: \n"
    "{instruction}\n"
    "#Rewritten Prompt#:\n"
)

DEPTH_METHODS = {
    "depth_constraints": "Please add one more constraints/requirements into #The Given Prompt#'",
    "depth_deepening": (
        "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry "
        "can be increased."
    ),
    "depth_concretizing": "Please replace general concepts with more specific concepts.",
    "depth_reasoning": (
        "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it to "
        "explicitly request multiple-step reasoning."
    ),
    # Only in the WizardLM appendix, as few-shot prompts per data format; not in the released code.
    # We use the appendix's method sentence for the format that matters here (Python code) in the
    # same in-depth template, zero-shot. A documented deviation (README).
    "depth_complicate_input": "You must add [python code] format text as input data in [Rewritten Prompt]",
}

# WizardLM, Evol_Instruct/breadth.py: the in-breadth prompt.
BREADTH_TEMPLATE = (
    "I want you act as a Prompt Creator.\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
    "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
    "#Created Prompt#\n"
    "#Given Prompt#: \n"
    "{instruction}\n"
    "#Created Prompt#:\n"
)


def _template(base: str, method: str = "") -> str:
    return base.replace("{method}", method).replace("{question}", "{instruction}")


def builtin_heuristics() -> list[Heuristic]:
    code = [Heuristic(n, "code", _template(CODE_TEMPLATE, m), w) for n, (m, w) in CODE_METHODS.items()]
    depth = [Heuristic(n, "general", _template(DEPTH_TEMPLATE, m)) for n, m in DEPTH_METHODS.items()]
    breadth = [Heuristic("breadth", "general", _template(BREADTH_TEMPLATE))]
    return code + depth + breadth


@hookimpl
def register_heuristics(register):
    for heuristic in builtin_heuristics():
        register(heuristic)
