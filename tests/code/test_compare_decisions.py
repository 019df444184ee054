"""``evaluation.compare_decisions``: the fairness-mitigation table of notebook 02, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.evaluation import compare_decisions

# Ten rows, one purchase; groups a (rows 0-4) and b (rows 5-9).
Y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
GROUP = pd.Series(["a"] * 5 + ["b"] * 5, name="band")


def test_nobody_selected_is_fair_and_no_better_than_chance() -> None:
    table = compare_decisions({"none": (np.zeros(10), np.zeros(10))}, Y, GROUP, Y, GROUP)
    assert table.loc["none"].to_dict() == {"selection_rate": 0.0, "balanced_accuracy": 0.5,
                                           "dp_difference": 0.0, "dp_difference_train": 0.0}


def test_rates_accuracy_and_parity_gaps_by_hand() -> None:
    picks = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])  # both from group a: rates 0.4 and 0.0
    fitted = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0])  # one from each group: no gap
    table = compare_decisions({"rule": (picks, fitted)}, Y, GROUP, Y, GROUP)
    row = table.loc["rule"]
    assert row["selection_rate"] == pytest.approx(0.2)
    assert row["balanced_accuracy"] == pytest.approx((1.0 + 8 / 9) / 2)  # TPR 1, TNR 8/9
    assert row["dp_difference"] == pytest.approx(0.4) and row["dp_difference_train"] == pytest.approx(0.0)
    assert list(table.index) == ["rule"]


def test_misaligned_decisions_are_refused() -> None:
    with pytest.raises(ValueError, match="rule: 9 and 10 decisions for 10 and 10 labels"):
        compare_decisions({"rule": (np.zeros(9), np.zeros(10))}, Y, GROUP, Y, GROUP)
