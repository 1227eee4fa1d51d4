"""Where each stage reads and writes, relative to the DVC project root (dvc.yaml uses the same paths)."""

from pathlib import Path

RAW = Path("data/raw")
SEED = Path("data/seed/seed.jsonl")
SEED_REJECTS = Path("data/seed/rejects.jsonl")
EVOLVED = Path("data/evolved")
ANSWERS = Path("data/answers")  # the answers each round used: shared with the data (persistent DVC output)
ELIMINATED = Path("data/eliminated")
KEPT = ELIMINATED / "kept.jsonl"
REMOVED = ELIMINATED / "removed.jsonl"
MERGED = Path("data/merged")
TRAIN_JSONL = MERGED / "train.jsonl"
TRAIN_DATASET = MERGED / "dataset"
SFT_MODEL = Path("models/sft")
EVAL = Path("data/eval")
METRICS = Path("metrics")
REPORTS = Path("reports")  # detail behind the headline metrics: per-rule, per-round, per-reason counts
PLOTS = Path("plots")
PRICES = Path("prices.yaml")  # USD per million tokens by model: not a stage param
STATE = Path(".evolinstruct")  # caches and checkpoints: not DVC outputs, never holds secrets
REPORTS = Path("reports")  # detail behind metrics/: normal stage outputs
