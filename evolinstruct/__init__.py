"""evolinstruct: Code Evol-Instruct (WizardCoder, arXiv 2306.08568) as a reproducible DVC pipeline.

Heavy libraries (torch, transformers, trl, datasets, SDK clients) are imported lazily inside the
functions that need them, so that `evol --help` and `evol plugins` start fast.
"""

__version__ = "0.1.0"
