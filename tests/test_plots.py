"""Static plot images and the ablation figure's points, without DVC or a network."""

import math

from evolinstruct.cli.ablation import AblationPoint, draw_ablation, points_from_rows
from evolinstruct.core.plots import horizontal_bars, line_plot, stacked_bars

PNG = b"\x89PNG\r\n\x1a\n"


def test_each_image_is_a_png_and_the_same_data_gives_the_same_bytes(tmp_path):
    drawn = {}
    for name, draw in {
        "line": lambda p: line_plot(p, {"loss": ([1, 2, 3], [3.0, 2.0, 1.5])}, title="t", xlabel="x", ylabel="y"),
        "stacked": lambda p: stacked_bars(p, ["0", "1"], {"kept": [3, 2], "removed": [0, 1]}, title="t", xlabel="x",
                                          ylabel="y"),
        "bars": lambda p: horizontal_bars(p, {"sorry": 3, "near_duplicate": 10}, title="t", xlabel="x"),
    }.items():
        first, second = tmp_path / f"{name}-1.png", tmp_path / f"{name}-2.png"
        draw(first)
        draw(second)
        assert first.read_bytes().startswith(PNG), name
        assert first.read_bytes() == second.read_bytes(), f"{name}: no timestamp, so DVC's hash is stable"
        drawn[name] = first.read_bytes()
    assert len(set(drawn.values())) == 3


def test_ablation_points_come_from_every_pass_at_1_column_of_exp_show_rows():
    rows = [
        {"Experiment": None, "rev": "workspace", "rounds": 2, "evolve.family": "code", "humaneval.pass@1": 0.25,
         "mbpp.pass@1": 0.5, "humaneval.problems": 164},
        {"Experiment": "fluid-dove", "rev": "abc1234", "rounds": 0.0, "evolve.family": "code",
         "metrics/evaluate.json:humaneval.pass@1": 0.125},
        {"Experiment": "queued", "rev": "def5678", "rounds": 3, "humaneval.pass@1": math.nan},  # not run yet
        {"Experiment": "broken", "rev": "0000000", "humaneval.pass@1": 0.9},  # no params: skipped
    ]
    assert points_from_rows(rows) == [
        AblationPoint("workspace", 2, "code", "humaneval", 0.25),
        AblationPoint("workspace", 2, "code", "mbpp", 0.5),
        AblationPoint("fluid-dove", 0, "code", "humaneval", 0.125),
    ]


def test_the_ablation_figure_is_drawn_one_line_per_benchmark(tmp_path):
    points = [AblationPoint(f"e{r}", r, "code", b, r / 10) for r in range(4) for b in ("humaneval", "mbpp")]
    draw_ablation(points, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes().startswith(PNG)
