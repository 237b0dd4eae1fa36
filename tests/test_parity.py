"""The parity judge: what counts as agreement between a reference and a candidate."""

from __future__ import annotations

import numpy as np

from edgekit.parity import compare_outputs


def test_equal_non_finite_values_agree_and_others_do_not() -> None:
    ref = {"y": np.array([[np.nan, 1.0], [np.inf, -np.inf]])}
    same = compare_outputs(ref, {"y": ref["y"].copy()}, 1e-4, 1e-3)[0]
    assert same.passed and same.max_abs == 0.0
    extra_nan = compare_outputs({"y": np.ones(3)}, {"y": np.array([1.0, np.nan, 1.0])}, 1e-4, 0)[0]
    assert not extra_nan.passed and extra_nan.detail == "non-finite values"
    lost_nan = compare_outputs(ref, {"y": np.nan_to_num(ref["y"])}, 1e-4, 1e-3)[0]
    assert not lost_nan.passed


def test_tolerance_is_absolute_plus_relative() -> None:
    ref = {"y": np.array([100.0, 0.0])}
    assert compare_outputs(ref, {"y": np.array([100.09, 0.00005])}, 1e-4, 1e-3)[0].passed
    assert not compare_outputs(ref, {"y": np.array([100.2, 0.0])}, 1e-4, 1e-3)[0].passed
