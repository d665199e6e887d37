"""The weightwatcher baseline of protocol v2 (benchmarks/regret.py): its rule per row and its
walk, on hand-made columns (the benchmark's policies are plain functions of the grid)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import regret  # noqa: E402


def test_ww_rule_maps_mean_alpha_of_the_seen_seeds():
    alpha = {(2.0, 0): 7.0, (2.0, 1): 6.5, (4.0, 0): 1.0, (4.0, 1): 3.5, (8.0, 0): 1.5,
             (8.0, 1): 1.9, (8.0, 2): 9.0}
    # row 2: mean 6.75 > 6 -> colder; row 4: mean 2.25 -> keep; row 8 over seeds 0, 1 only: 1.7
    assert regret.ww_steps(alpha, [2, 4, 8], seen=[0, 1]) == [regret.COLDER, regret.KEEP,
                                                             regret.HOTTER]
    assert regret.ww_steps(None, [2, 4], seen=[0]) is None


def test_step_walk_stops_on_keep_reversal_edge_worse_and_budget():
    val = np.array([0.30, 0.20, 0.25, 0.10])
    C, K, H = regret.COLDER, regret.KEEP, regret.HOTTER
    assert regret.step_walk([C, C, C, C], val, 0, 4) == 1      # 0 -> 1 -> 2 worse: stop, best 1
    assert regret.step_walk([C, K, C, C], val, 0, 4) == 1      # keep at row 1
    assert regret.step_walk([C, H, C, C], val, 0, 4) == 1      # reversal at row 1
    assert regret.step_walk([C, C, C, C], val, 2, 4) == 3      # edge after row 3
    assert regret.step_walk([C, C, C, C], val, 0, 1) == 0      # budget 1: the start
    assert regret.step_walk([H, H, H, H], val, 0, 4) == 0      # no row hotter than the first


def test_continue_greedy_spends_the_budget_from_the_best_visited_row():
    val = np.array([0.30, 0.20, 0.25, 0.10, 0.40])
    reg = 100 * (val - val.min())          # test = validation here, regret in pp
    # the walk visited 0, 1 and stopped; budget 4: from best 1 the only unvisited neighbour is 2
    # (worse), then best is still 1 with no unvisited neighbour: stop, report 1
    assert regret.continue_greedy(val, reg, [0, 1], 4) == reg[1]
    # from 2 alone with budget 3: neighbours 1 and 3, both unvisited -> mean of both branches;
    # via 1: best 1, next neighbour 0 (worse) -> 1; via 3: best 3, next 4 (worse) -> 3
    assert regret.continue_greedy(val, reg, [2], 3) == np.mean([reg[1], reg[3]])
    # a full visited set returns the best visited; budget 1 returns the start
    assert regret.continue_greedy(val, reg, [0, 4], 2) == reg[0]
    assert regret.continue_greedy(val, reg, [4], 1) == reg[4]


def test_post_hoc_rows_are_kept_apart_from_the_protocol_policies():
    assert not set(regret.POST_HOC) & set(regret.POLICIES)
    assert all(p.startswith("post hoc:") for p in regret.POST_HOC)


def _results():
    """Two hand-made settings in the structure score_setting returns."""
    def cells(shift):
        return {(0.1, s): {k: {"tune": shift + s + 1.0 / k, "random": shift + 2.0 / k,
                               regret.EVALUATED: float(min(k, 2))} for k in regret.BUDGETS}
                for s in range(3)}
    return [{"name": "a", "cells": cells(0.0), "wins": 3, "losses": 1},
            {"name": "b", "cells": cells(1.0), "wins": 1, "losses": 1}]


def test_tidy_table_round_trips_to_the_same_report(tmp_path):
    import pandas as pd

    res = _results()
    frame = regret.to_frame(res)
    assert len(frame) == 2 * 3 * len(regret.BUDGETS) * 3
    path = tmp_path / "scores.csv"
    frame.to_csv(path, index=False)
    back = regret.from_frame(pd.read_csv(path))
    # the tables are the same; only the advised-move line (counts not in the CSV) is missing
    full = regret.report(res, per_setting=True)
    again = regret.report(back, per_setting=True)
    assert ([ln for ln in full.splitlines() if ln and "advised move" not in ln]
            == [ln for ln in again.splitlines() if ln])
    assert "points tune evaluated" in again and "1.00 / 2.00 / 2.00 / 2.00" in again


def test_plot_draws_pooled_and_one_panel_per_setting(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    frame = regret.to_frame(_results())
    fig = regret.plot_regret(frame, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
    assert [ax.get_title() for ax in fig.axes] == ["pooled (6 start cells)", "a (3 start cells)",
                                                   "b (3 start cells)"]
    # pooled tune line: mean over the 6 cells at each budget
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "tune"][0]
    expect = [np.mean([sh + s + 1.0 / k for sh in (0.0, 1.0) for s in range(3)])
              for k in regret.BUDGETS]
    assert np.allclose(line.get_ydata(), expect)


def test_drop_rows_leaves_a_row_out_and_rejects_typos():
    import pytest
    import xarray as xr

    ds = xr.Dataset({"x": (("lr", "density"), np.arange(6.0).reshape(3, 2))},
                    coords={"lr": [0.01, 0.1, 0.2], "density": [0.1, 0.5]},
                    attrs={"sweep_name": "v2_lr"})
    drops = regret.parse_drops(["v2_lr:lr=0.2", "v2_sam:sam_rho=0.5"])
    assert drops == [("v2_lr", "lr", 0.2), ("v2_sam", "sam_rho", 0.5)]
    out = regret.drop_rows(ds, drops)          # the v2_sam entry does not apply to this file
    assert out["lr"].values.tolist() == [0.01, 0.1]
    with pytest.raises(SystemExit, match="no value 0.3"):
        regret.drop_rows(ds, regret.parse_drops(["v2_lr:lr=0.3"]))
    with pytest.raises(SystemExit, match="no axis 'rho'"):
        regret.drop_rows(ds, regret.parse_drops(["v2_lr:rho=0.2"]))
    with pytest.raises(SystemExit, match="SETTING:AXIS=VALUE"):
        regret.parse_drops(["v2_lr-lr=0.2"])
