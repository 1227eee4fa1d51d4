"""Stage `eliminate`: gather every round's attempts, keep the evolutions that passed the filters,
drop exact duplicates across the seed and all rounds (the earliest record wins), and write the
kept records and, separately, every removed one with its rule and evidence.

Params: the `eliminate` group.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from evolinstruct import paths
from evolinstruct.atomic import write_json
from evolinstruct.params import read_group
from evolinstruct.records import Record, Rejection, iter_records, read_records, round_path, write_records
from evolinstruct.stage import run_stage

log = logging.getLogger(__name__)


@dataclass
class EliminateParams:
    #: Remove evolved instructions equal to an earlier one after normalising whitespace and case.
    exact_dedup: bool = True


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def evolved_rounds() -> list[list[Record]]:
    manifest = json.loads((paths.EVOLVED / "manifest.json").read_text(encoding="utf-8"))
    return [read_records(round_path(paths.EVOLVED, k)) for k in range(1, manifest["rounds"] + 1)]


def eliminate(seeds: list[Record], rounds: list[list[Record]], exact_dedup: bool) -> tuple[list[Record], list[Record]]:
    """Return (kept evolved records, removed records with reasons), in a stable order."""
    seen = {normalise(s.instruction): s.id for s in seeds}
    kept: list[Record] = []
    removed: list[Record] = []
    for attempts in rounds:
        for record in attempts:
            if record.status != "kept":
                removed.append(record)
                continue
            key = normalise(record.instruction)
            if exact_dedup and key in seen:
                reason = Rejection("exact_duplicate", f"duplicate of {seen[key]}")
                removed.append(record.replace(status="eliminated", reasons=(*record.reasons, reason)))
                continue
            seen.setdefault(key, record.id)
            kept.append(record)
    return kept, removed


def main() -> None:
    params = read_group(EliminateParams, "eliminate")
    seeds = list(iter_records(paths.SEED))
    kept, removed = eliminate(seeds, evolved_rounds(), params.exact_dedup)
    write_records(paths.KEPT, kept)
    write_records(paths.REMOVED, removed)
    per_round: dict[str, Counter[str]] = defaultdict(Counter)
    for record in removed:
        for reason in record.reasons:
            per_round[str(record.round)][reason.rule] += 1
    for record in kept:
        per_round[str(record.round)]["kept"] += 1
    write_json(paths.METRICS / "eliminate.json", {
        "kept": len(kept),
        "removed": len(removed),
        "rounds": {k: dict(sorted(v.items())) for k, v in sorted(per_round.items())},
    })
    log.info("kept %d evolved records, removed %d (see %s)", len(kept), len(removed), paths.REMOVED)


if __name__ == "__main__":
    run_stage("eliminate", main)
