"""Running a stage script: logging, one-line errors, and exit codes that DVC understands."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from evolinstruct.core.errors import EvolError, ParamsError


def _not_printed_already(record: logging.LogRecord) -> bool:
    """False for a record that a library's own handler has printed on its way up to the root.

    `datasets` and `huggingface_hub` add a stream handler to their top logger and still propagate,
    so with a root handler every hub line would be printed twice."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None and logger.parent is not None:  # stop below the root
        if any(not isinstance(h, logging.NullHandler) and record.levelno >= h.level for h in logger.handlers):
            return False
        if not logger.propagate:
            break
        logger = logger.parent
    return True


#: Said when a stage DVC runs in the workspace refuses a params.yaml value: DVC writes `-S` values
#: into the file before running, and a failed run leaves them there for the next run to trip on.
SET_STAYS = ("a value set with `dvc exp run -S` stays in params.yaml after a failed run: fix it there, or "
             "`git checkout params.yaml` to restore the committed file (dropping every uncommitted edit in it); "
             "`dvc exp run --temp` or `--queue` leave the workspace's params.yaml alone")


def in_dvc_workspace() -> bool:
    """Whether DVC runs this stage in the user's workspace (`dvc repro`, `dvc exp run`), where a
    `-S` value is written into params.yaml. `--temp`/`--queue` run in a copy, with DVC_ROOT
    pointing back at the workspace."""
    root = os.environ.get("DVC_ROOT")
    return bool(os.environ.get("DVC_STAGE") and root) and Path(root).resolve() == Path.cwd().resolve()


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Call a stage's `main`; print user errors as one line and exit non-zero.

    Set EVOLINSTRUCT_VERBOSE=1 for the traceback. Ctrl-C exits 130 with outputs untouched (every
    output is written atomically, and paid requests are already in the request cache).
    """
    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_printed_already)
    # matplotlib logs at INFO when bar labels look like numbers (the rounds): not news to a user.
    for noisy in ("httpx", "httpx2", "openai", "anthropic", "datasets", "urllib3", "filelock", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main()
    except EvolError as exc:
        if os.environ.get("EVOLINSTRUCT_VERBOSE"):
            traceback.print_exc()
        lines = exc.lines()
        if isinstance(exc, ParamsError) and Path(exc.path).name == "params.yaml" and in_dvc_workspace():
            lines[0] += f" ({SET_STAYS})"
        for line in lines:
            print(f"{name}: error: {line}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; rerun to resume (answered requests are cached)", file=sys.stderr)
        sys.exit(130)
