"""Looking into a project's data: a record, its lineage and its fate (`evol inspect`), and
statistics per round (`evol stats`). Reads the stages' outputs; never the network, never a model."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.errors import EvolError
from evolinstruct.core.records import Record, iter_records


@dataclass
class Project:
    """Every record the pipeline wrote, indexed by id, with the file each came from."""

    root: Path
    records: dict[str, Record] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    kept: set[str] = field(default_factory=set)
    removed: dict[str, Record] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Project:
        project = cls(root)
        seed = root / paths.SEED
        if not seed.exists():
            raise EvolError(f"{seed}: not found; nothing to inspect yet", "run `dvc repro` (or `make demo`) first")
        sources = [seed, *sorted((root / paths.EVOLVED).glob("round_*.jsonl"), key=_round_number)]
        for source in sources:
            for record in iter_records(source):
                project.records[record.id] = record
                project.files[record.id] = str(source.relative_to(root))
                if record.parent_id:
                    project.children[record.parent_id].append(record.id)
        if (root / paths.KEPT).exists():
            project.kept = {r.id for r in iter_records(root / paths.KEPT)}
        if (root / paths.REMOVED).exists():
            project.removed = {r.id: r for r in iter_records(root / paths.REMOVED)}
        return project

    def find(self, prefix: str) -> Record:
        matches = [rid for rid in self.records if rid.startswith(prefix)]
        if not matches:
            raise EvolError(f"no record with id {prefix!r} in {self.root / paths.SEED} or {self.root / paths.EVOLVED}",
                            "ids are the `id` field of any data/*.jsonl line; a unique prefix is enough")
        if len(matches) > 1:
            raise EvolError(f"id prefix {prefix!r} matches {len(matches)} records ({', '.join(sorted(matches)[:3])}, ...)",
                            "give more characters")
        return self.records[matches[0]]

    def lineage(self, record: Record) -> list[Record]:
        """The record's ancestors, nearest first, ending at its seed."""
        chain, node = [], record
        while node.parent_id and node.parent_id in self.records:
            node = self.records[node.parent_id]
            chain.append(node)
        return chain

    def fate(self, record: Record) -> dict[str, Any]:
        """What became of the record: trains the model, or removed (and why), or not yet decided."""
        if record.id in self.kept:
            return {"fate": "kept", "file": str(paths.KEPT)}
        if record.id in self.removed:
            reasons = [{"rule": r.rule, "evidence": r.evidence} for r in self.removed[record.id].reasons]
            return {"fate": "removed", "file": str(paths.REMOVED), "reasons": reasons}
        if record.status in ("eliminated", "failed"):
            reasons = [{"rule": r.rule, "evidence": r.evidence} for r in record.reasons]
            return {"fate": record.status, "file": self.files[record.id], "reasons": reasons}
        return {"fate": "not yet decided (run the eliminate stage)"}

    def describe(self, record: Record) -> dict[str, Any]:
        return {
            "record": record.to_json(),
            "file": self.files[record.id],
            "fate": self.fate(record),
            "lineage": [{"id": a.id, "round": a.round, "heuristic": a.heuristic, "status": a.status,
                         "instruction": a.instruction} for a in self.lineage(record)],
            "children": [{"id": c, "round": self.records[c].round, "status": self.records[c].status,
                          "heuristic": self.records[c].heuristic} for c in self.children.get(record.id, [])],
        }


def _round_number(path: Path) -> int:
    return int(path.stem.split("_", 1)[1])


def _first_line(text: str, width: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def outcome(record: dict[str, Any], fate: dict[str, Any]) -> str:
    """One phrase for what happened to a record in both stages, so the header never says "kept"
    for a record that eliminate removed."""
    status = record["status"]
    if fate["fate"] == "removed":
        rules = ", ".join(x["rule"] for x in fate.get("reasons", []))
        return f"{status} by evolve, then removed by eliminate ({rules})"
    if fate["fate"] == "kept":
        return "seed, in the training set" if status == "seed" else "kept by evolve and eliminate: in the training set"
    if status in ("eliminated", "failed"):
        return f"{status} by evolve"
    return f"{status} (eliminate has not run)"


def render_record(info: dict[str, Any]) -> str:
    r = info["record"]
    lines = [f"{r['id']}  round {r['round']}  {outcome(r, info['fate'])}  ({info['file']})"]
    if r.get("heuristic"):
        lines.append(f"heuristic: {r['heuristic']}   model: {r.get('backend')}:{r.get('model')}")
    lines += ["instruction:", *("  " + x for x in r["instruction"].splitlines()), "output:",
              *("  " + x for x in r["output"].splitlines()[:20])]
    fate = info["fate"]
    lines.append(f"fate: {fate['fate']}")
    lines += [f"  {x['rule']}: {x['evidence']}" for x in fate.get("reasons", [])]
    if info["lineage"]:
        lines.append("lineage (parent first, back to the seed):")
        lines += [f"  {a['id']}  round {a['round']}  {a['heuristic'] or 'seed'}  {_first_line(a['instruction'])}"
                  for a in info["lineage"]]
    if info["children"]:
        lines.append("evolved into:")
        lines += [f"  {c['id']}  round {c['round']}  {c['heuristic']}  {c['status']}" for c in info["children"]]
    return "\n".join(lines)


def statistics(project: Project) -> dict[str, Any]:
    """Per round: records by status, rejection rules, mean instruction and output length; and the
    training set after elimination."""
    rounds: dict[int, dict[str, Any]] = {}
    by_round: dict[int, list[Record]] = defaultdict(list)
    for record in project.records.values():
        by_round[record.round].append(record)
    for k, group in sorted(by_round.items()):
        rules = Counter(reason.rule for r in group for reason in r.reasons)
        removed = [project.removed[r.id] for r in group if r.id in project.removed]
        rounds[k] = {
            "records": len(group),
            "status": dict(Counter(r.status for r in group)),
            # What the eliminate stage did to this round's records (data/eliminated/*.jsonl).
            "removed_by_eliminate": len(removed),
            "removed_rules": dict(Counter(reason.rule for r in removed for reason in r.reasons).most_common()),
            "training": sum(1 for r in group if r.id in project.kept),
            "rules": dict(rules.most_common()),
            "mean_instruction_words": round(sum(len(r.instruction.split()) for r in group) / len(group), 2),
            "mean_output_lines": round(sum(len(r.output.splitlines()) for r in group) / len(group), 2),
            "heuristics": dict(Counter(r.heuristic for r in group if r.heuristic).most_common()),
        }
    removed_rules = Counter(reason.rule for r in project.removed.values() for reason in r.reasons)
    return {"rounds": rounds, "training_records": len(project.kept), "removed_records": len(project.removed),
            "removed_by_rule": dict(removed_rules.most_common())}


def render_statistics(stats: dict[str, Any]) -> str:
    lines = ["       evolve: records, kept, eliminated, failed | eliminate: removed, training set",
             f"{'round':>5} {'records':>8} {'kept':>6} {'elim.':>6} {'failed':>6} | {'removed':>7} {'training':>8} "
             f"{'instr. words':>13}  top rules"]
    for k, row in stats["rounds"].items():
        status = row["status"]
        rules = Counter(row["rules"]) + Counter(row["removed_rules"])
        top = ", ".join(f"{rule} {n}" for rule, n in rules.most_common(3))
        kept = status.get("kept", status.get("seed", 0))
        lines.append(f"{k:>5} {row['records']:>8} {kept:>6} {status.get('eliminated', 0):>6} "
                     f"{status.get('failed', 0):>6} | {row['removed_by_eliminate']:>7} {row['training']:>8} "
                     f"{row['mean_instruction_words']:>13}  {top}")
    lines.append("heuristics drawn per round (evolve attempts):")
    for k, row in stats["rounds"].items():
        if row.get("heuristics"):
            lines.append(f"{k:>5}  " + ", ".join(f"{name} {n}" for name, n in row["heuristics"].items()))
    lines.append(f"training set: {stats['training_records']} records; removed by eliminate: {stats['removed_records']}"
                 + (f" ({', '.join(f'{r} {n}' for r, n in stats['removed_by_rule'].items())})"
                    if stats["removed_by_rule"] else ""))
    return "\n".join(lines)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
