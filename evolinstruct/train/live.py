"""Live training metrics with DVCLive, for `dvc exp show` while `dvc exp run` trains.

At every logged step the main process writes, through DVCLive, `dvclive/sft/metrics.json` (the
latest step, loss, learning rate, grad norm and real tokens/s: a metrics file of the stage, so
`dvc exp show` shows the run's progress in the workspace row while it trains) and one TSV per
metric under `dvclive/sft/plots/metrics/` (the step-level curves of `dvc plots show`). DVCLive
writes no dvc.yaml of its own (the stage declares these files) and makes no experiment (DVC does).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)

LIVE_DIR = "dvclive/sft"
#: Trainer log key -> DVCLive metric name.
LOGGED = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm", "tokens_per_s": "tokens_per_s"}


class LiveMetrics(TrainerCallback):
    """Step-level metrics to DVCLive from the main process. `resume=True` when the run resumes
    from a checkpoint, so the curves continue instead of starting over."""

    def __init__(self, directory: str = LIVE_DIR, resume: bool = False) -> None:
        self.directory, self.resume = directory, resume
        self.live: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.live is None:
            from dvclive import Live
            from scmrepo.exceptions import SCMError

            try:
                self.live = Live(self.directory, resume=self.resume, save_dvc_exp=False, dvcyaml=False, report=None)
            except SCMError as exc:  # DVCLive 3.49 fails in a git repository without a commit
                log.warning("no live metrics in %s (DVCLive: %s); the final metrics are written as usual",
                            self.directory, exc)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self.live is None or not logs or "loss" not in logs:
            return
        self.live.step = state.global_step
        for key, name in LOGGED.items():
            if logs.get(key) is not None:
                self.live.log_metric(name, float(logs[key]))
        self.live.log_metric("epoch", float(state.epoch or 0), plot=False)
        self.live.make_summary()  # metrics.json now, for `dvc exp show` (next_step would move the step on)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.live is not None:
            self.live.end()
