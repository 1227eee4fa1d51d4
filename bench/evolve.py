"""The evolve stage against the loopback server (tests/loopback.py, its own process), through the
real `dvc repro evolve`, each case next to a bare SDK loop and the ideal (issues 16 and 24).

The server answers as models do (`--reply realistic`): evolutions of a few sentences, answers of
150-400 tokens with a code block, short judge verdicts, token usage from the texts' lengths.
Each case reports wall and CPU seconds (user + system, of the process tree) for the stage and
for the bare loop, run one after the other against the same server setup.

stage cases, SEEDS seeds, 1 round, judge on (3 requests per seed), concurrency 64, 200 ms:
  clean:     every request 200 ms. Target: within 1.2x of the bare loop, start-up and DVC included.
  long_lines: 2% of answers are one 20,000-character line without a full stop (a data table, a
             minified literal). Target: within 1.3x of the clean run.
  long_tail: 2% of requests take 15x the median (3 s). Target: within 1.3x of the clean run.
  hangs:     1% of requests hang until the per-request timeout (TIMEOUT s) and are retried.
             Target: at most one timeout more than the clean run per round.
             `openai_compatible` hedges by default (`evolver.hedge_after` 3: a request waiting more
             than 3x the running p95 latency, and at least 1 s, is sent a second time; first
             answer wins).
  hangs_unhedged: the same with `evolver.hedge_after: 0`, as the paid APIs run by default: each
             hung request holds its concurrency slot until the timeout.
bare loop: the same requests as the stage sends (its evolution prompts, the evolved instructions,
  the judge prompts) to the same server, `AsyncOpenAI.chat.completions.create` under a semaphore
  of the same size, no retries, no cache, no DVC (lost requests are counted, not retried).
ideal: requests / concurrency x latency.
startup: the stage's own start-up (imports, plugin discovery, cache open) in a fresh interpreter,
  median of three, and `python -X importtime`'s cumulative figure for the stage module; the
  heavy libraries must not be imported; the SDK's own import is reported on its own (it is paid
  when the first request is sent).
faults: 2,000 requests through the request runner with 20% of answers 429/500 and 2% hanging past
  the timeout; every request must be answered, and none answered twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEEDS, CONCURRENCY, LATENCY, TIMEOUT = 800, 64, 0.2, 5.0
REQUESTS, FAULT_REQUESTS = 3 * SEEDS, 2000
#: BENCH_EVOLVE_CASES=clean,long_lines runs only those cases (and no fault run); default: all.
CASE_FILTER = [c for c in os.environ.get("BENCH_EVOLVE_CASES", "").split(",") if c]
HANGS = ["--hang-rate", "0.01", "--hang-seconds", "60"]
#: case: (loopback server arguments, evolver params for the stage)
CASES = {
    "clean": ([], {}),
    "long_lines": (["--long-line-rate", "0.02"], {}),
    "long_tail": (["--slow-rate", "0.02", "--slow-seconds", str(15 * LATENCY)], {}),
    "hangs": (HANGS, {}),
    "hangs_unhedged": (HANGS, {"hedge_after": 0}),
}


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/loopback.py"), "--latency", str(LATENCY),
                             "--reply", "realistic", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def stop_server(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate("stats\n", timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def env(cache: Path) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "OPENAI_API_KEY": "sk-bench",
            "EVOLINSTRUCT_CACHE": str(cache), "DVC_NO_ANALYTICS": "1"}


def seeds() -> list:
    from evolinstruct.core.records import seed_record

    return [seed_record(f"Write a Python function that computes statistic number {i} of a list of integers.",
                        "def f(xs):\n    return sum(xs)") for i in range(SEEDS)]


def children_cpu() -> float:
    """User + system CPU seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_project(root: Path, url: str, overrides: dict) -> None:
    """A DVC project holding the real evolve stage (from dvc.yaml) and seed data."""
    from evolinstruct.core.records import write_records

    root.mkdir(parents=True)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evolve": stages["evolve"]}}))
    params = {"rounds": 1, "evolver": {"backend": "openai_compatible", "model": "bench", "base_url": url + "/v1",
                                       "max_concurrency": CONCURRENCY, "max_tokens": 256,
                                       "request_timeout": TIMEOUT, "retry_base_delay": 0.05, "retry_max_delay": 1.0,
                                       **overrides},
              "evolve": {"family": "code", "seed": 42}, "plugins": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "models/evolver").mkdir(parents=True)  # the stage's dep for a local evolver model (none here)
    write_records(root / "data/seed/seed.jsonl", seeds())
    # The lock file the stage checks the installed plugins against, as dvc.yaml's `plugins` stage
    # writes it, before the timed run.
    subprocess.run([sys.executable, "-m", "evolinstruct.cli.main", "plugins", "--lock"], cwd=root, check=True,
                   capture_output=True)
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, env=env(root / "cache.sqlite"))


def run_stage(case: str, args: list[str], overrides: dict, workdir: Path) -> dict:
    server, url = start_server(*args)
    root = workdir / case
    try:
        make_project(root, url, overrides)
        cpu, started = children_cpu(), time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "evolve"], cwd=root, env=env(root / "cache.sqlite"),
                              capture_output=True, text=True)
        seconds, cpu = time.monotonic() - started, children_cpu() - cpu
    finally:
        served = stop_server(server)
    if proc.returncode != 0:
        raise SystemExit(f"bench evolve {case}: dvc repro failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    report = json.loads((root / "reports/evolve.json").read_text())
    progress = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("evolve: r1")]
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "requests_sent": report["this_run"]["requests_sent"],
            "eliminated_by_rule": report["rounds_table"][0]["eliminated_by_rule"],
            "retries": report["this_run"]["retries"], "hedged": report["this_run"]["hedged"],
            "kept": report["rounds_table"][0]["evolved"],
            "server": served, "last_progress_line": progress[-1] if progress else ""}


BARE = """
import asyncio, json, sys, time
import openai
url, prompts_file, concurrency, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
prompts = json.load(open(prompts_file))
async def main():
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-bench", max_retries=0, timeout=timeout)
    slots = asyncio.Semaphore(concurrency)
    lost = 0
    async def one(prompt):
        nonlocal lost
        async with slots:
            try:
                response = await client.chat.completions.create(model="bench", max_tokens=256, temperature=1.0,
                    top_p=0.9, messages=[{"role": "user", "content": prompt}])
                response.choices[0].message.content
            except Exception:
                lost += 1
    started = time.monotonic()
    await asyncio.gather(*(one(p) for p in prompts))
    print(time.monotonic() - started, lost)
asyncio.run(main())
"""


def stage_prompts() -> list[str]:
    """The requests the stage sends for SEEDS seeds in round 1 (evolve, answer, judge), as the
    realistic server answers them: the bare loop sends the same, so both get the same answers."""
    sys.path.insert(0, str(REPO / "tests"))
    from evolinstruct.plugins.filters import EQUALITY_PROMPT
    from evolinstruct.plugins.heuristics import builtin_heuristics
    from loopback import realistic_reply

    from evolinstruct.evolve.heuristics import draw

    code = [h for h in builtin_heuristics() if h.family == "code"]
    prompts = []
    for seed in seeds():
        evolve = draw(code, {}, 42, seed.id, 1).render(seed.instruction)
        evolved = realistic_reply(evolve)
        prompts += [evolve, evolved, EQUALITY_PROMPT.replace("{first}", seed.instruction).replace("{second}", evolved)]
    return prompts


def run_bare(args: list[str], workdir: Path) -> dict:
    """The stage's requests to the same server, bare SDK loop, timed from process start."""
    prompts = workdir / "prompts.json"
    if not prompts.exists():
        prompts.write_text(json.dumps(stage_prompts()))
    server, url = start_server(*args)
    try:
        cpu, started = children_cpu(), time.monotonic()
        proc = subprocess.run([sys.executable, "-c", BARE, url, str(prompts), str(CONCURRENCY), str(TIMEOUT)],
                              capture_output=True, text=True, check=True)
        seconds, cpu = time.monotonic() - started, children_cpu() - cpu
    finally:
        stop_server(server)
    loop_s, lost = proc.stdout.split()
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "loop_seconds": round(float(loop_s), 2),
            "lost": int(lost)}


STARTUP = """
import time, sys
t = time.perf_counter()
import evolinstruct.stages.evolve
from evolinstruct.registry import get_registry
registry = get_registry()
registry.heuristics()
registry.pick("backend", "openai")
registry.pick("filter", "equality")
from evolinstruct.llm.request_cache import RequestCache
RequestCache(sys.argv[1]).close()
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("torch", "transformers", "datasets", "openai", "anthropic") if m in sys.modules)
t = time.perf_counter()
import openai
print(elapsed, time.perf_counter() - t, ",".join(heavy))
"""


def bench_startup(workdir: Path) -> dict:
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", STARTUP, str(workdir / "startup.sqlite")], capture_output=True,
                             text=True, check=True, cwd=workdir).stdout.split()
        runs.append((float(out[0]), float(out[1]), out[2] if len(out) > 2 else ""))
    importtime = subprocess.run([sys.executable, "-X", "importtime", "-c", "import evolinstruct.stages.evolve"],
                                capture_output=True, text=True, cwd=workdir).stderr
    match = re.search(r"\|\s*(\d+) \| evolinstruct\.stages\.evolve$", importtime, re.MULTILINE)
    return {
        "stage_startup_s": round(statistics.median(r[0] for r in runs), 3),
        "all_runs_s": [round(r[0], 3) for r in runs],
        "importtime_cumulative_s": round(int(match.group(1)) / 1e6, 3) if match else None,
        "heavy_imported_at_startup": runs[0][2].split(",") if runs[0][2] else [],
        "openai_sdk_import_s": round(statistics.median(r[1] for r in runs), 3),
        "target_s": 1.0,
    }


def run_requests(url: str, timeout: float) -> dict:
    from evolinstruct.plugins.api_backends import OpenAIBackend

    from evolinstruct.evolve.rounds import RequestRunner, RoundStats
    from evolinstruct.llm.backends import Completion, EvolverConfig, Sampling
    from evolinstruct.llm.request_cache import RequestCache

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    config = EvolverConfig(model="bench", base_url=url + "/v1", max_concurrency=CONCURRENCY, max_retries=10,
                           request_timeout=timeout, retry_base_delay=0.05, retry_max_delay=1.0)
    prompts = [f"Make programming task {i} harder." for i in range(FAULT_REQUESTS)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = RequestCache(Path(tmp) / "requests.sqlite")
        runner = RequestRunner(OpenAIBackend(config), cache, Sampling(1.0, 0.9, 256))
        stats = RoundStats(round=1)

        async def go():
            try:
                return await runner.run("bench", prompts, 1, stats)
            finally:
                await runner.backend.aclose()

        started = time.monotonic()
        results = asyncio.run(go())
        seconds = time.monotonic() - started
        cached = len(cache)
        cache.close()
    answered = sum(isinstance(r, Completion) for r in results)
    return {"seconds": round(seconds, 2), "answered": answered, "lost": FAULT_REQUESTS - answered, "cached": cached,
            "retries": stats.retries, "request_failures": stats.request_failures}


def bench_faults() -> dict:
    server, url = start_server("--error-rate", "0.2", "--hang-rate", "0.02", "--hang-seconds", "10", "--seed", "1")
    try:
        faults = run_requests(url, timeout=1.0)
    finally:
        served = stop_server(server)
    faults["server"] = served
    faults["answered_twice"] = served["duplicates"]
    faults["ok"] = faults["lost"] == 0 and faults["answered_twice"] == 0
    return faults


def bench_evolve() -> dict:
    ideal = REQUESTS / CONCURRENCY * LATENCY
    workdir = Path(tempfile.mkdtemp(prefix="bench-evolve-"))
    try:
        result: dict = {"seeds": SEEDS, "rounds": 1, "requests": REQUESTS, "concurrency": CONCURRENCY,
                        "latency_s": LATENCY, "request_timeout_s": TIMEOUT, "ideal_s": round(ideal, 2),
                        "startup": bench_startup(workdir)}
        for case, (args, overrides) in CASES.items():
            if CASE_FILTER and case not in CASE_FILTER:
                continue
            stage = run_stage(case, args, overrides, workdir)
            bare = run_bare(args, workdir)
            stage["bare_loop"] = bare
            stage["ratio_to_bare"] = round(stage["seconds"] / bare["seconds"], 3)
            stage["cpu_ratio_to_bare"] = round(stage["cpu_seconds"] / bare["cpu_seconds"], 3)
            print(f"bench evolve {case}: {stage['seconds']} s ({stage['cpu_seconds']} s CPU) against the bare loop's "
                  f"{bare['seconds']} s ({bare['cpu_seconds']} s CPU)", file=sys.stderr)
            stage["ratio_to_ideal"] = round(stage["seconds"] / ideal, 3)
            result[case] = stage
        clean = result["clean"]["seconds"]
        result["targets"] = {
            "clean_within_1.2x_bare": result["clean"]["ratio_to_bare"] <= 1.2,
            "startup_under_1s": result["startup"]["stage_startup_s"] < 1.0,
        }
        for case in ("long_lines", "long_tail"):
            if case in result:
                result[case]["ratio_to_clean"] = round(result[case]["seconds"] / clean, 3)
                result["targets"][f"{case}_within_1.3x_clean"] = result[case]["seconds"] <= 1.3 * clean
        if "hangs" in result:
            result["targets"]["hangs_within_clean_plus_one_timeout"] = result["hangs"]["seconds"] <= clean + TIMEOUT
        for case in ("hangs", "hangs_unhedged"):
            if case in result:
                result[case]["seconds_over_clean"] = round(result[case]["seconds"] - clean, 2)
        if not CASE_FILTER:
            result["faults"] = bench_faults()
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(bench_evolve()))
