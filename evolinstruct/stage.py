"""Running a stage script: logging, one-line errors, and exit codes that DVC understands."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from evolinstruct.core.errors import EvolError


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Call a stage's `main`; print user errors as one line and exit non-zero.

    Set EVOLINSTRUCT_VERBOSE=1 for the traceback. Ctrl-C exits 130 with outputs untouched (every
    output is written atomically, and paid requests are already in the request cache).
    """
    logging.basicConfig(level=logging.INFO, format=f"{name}: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "openai", "anthropic", "datasets", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main()
    except EvolError as exc:
        if os.environ.get("EVOLINSTRUCT_VERBOSE"):
            traceback.print_exc()
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; rerun to resume (answered requests are cached)", file=sys.stderr)
        sys.exit(130)
