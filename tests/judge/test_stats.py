"""The judge summary's statistics against values computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from tasks.judge.stats import (
    bootstrap_mean_ci,
    histogram,
    paired_difference,
    summarize,
    wilson,
)


def test_mean_median_and_sample_sd_match_hand_computation():
    # 2, 4, 4, 4, 5, 5, 7, 9: mean 40/8 = 5; median (4+5)/2 = 4.5;
    # squared deviations 9+1+1+1+0+0+4+16 = 32; sample variance 32/7.
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9])
    assert s.n == 8 and s.mean == 5 and s.median == 4.5
    assert s.sd == pytest.approx(math.sqrt(32 / 7))
    assert s.ci95.low < 5 < s.ci95.high


def test_an_empty_or_single_sample_has_no_spread():
    assert summarize([]).mean is None
    one = summarize([7])
    assert (one.mean, one.median, one.sd) == (7, 7, None)
    assert one.ci95.as_list() == [7, 7]


def test_the_histogram_lists_every_level_of_the_scale():
    assert histogram([1, 3, 3, 10], low=1, high=10) == {
        1: 1, 2: 0, 3: 2, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 1}  # fmt: skip


def test_the_bootstrap_is_seeded_and_brackets_the_mean_like_the_normal_interval():
    rng = random.Random(1)
    values = [rng.randint(1, 10) for _ in range(400)]
    a, b = bootstrap_mean_ci(values), bootstrap_mean_ci(values)
    assert a == b
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    assert a.low == pytest.approx(mean - 1.96 * se, abs=0.05)
    assert a.high == pytest.approx(mean + 1.96 * se, abs=0.05)


def test_a_large_sample_takes_the_fast_path_and_agrees_with_the_normal_interval():
    rng = random.Random(2)
    values = [rng.randint(1, 10) for _ in range(50_000)]
    ci = bootstrap_mean_ci(values)
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    assert ci.low == pytest.approx(mean - 1.96 * se, abs=0.004)
    assert ci.high == pytest.approx(mean + 1.96 * se, abs=0.004)


def test_wilson_interval_matches_the_textbook_values():
    # 8 of 10: centre (0.8 + 1.92/10)/(1 + 3.8416/10) = 0.7166; half width 0.2333.
    ci = wilson(8, 10)
    assert ci.low == pytest.approx(0.4902, abs=1e-4)
    assert ci.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None
    assert wilson(0, 20).low == 0.0


def test_the_paired_difference_pairs_by_custom_id_and_reports_the_lift():
    a = {"x": 5, "y": 6, "z": 7, "only-a": 1}
    b = {"x": 6, "y": 8, "z": 7, "only-b": 9}
    out = paired_difference(a, b)
    assert out["n"] == 3 and out["only_a"] == 1 and out["only_b"] == 1
    assert out["mean_difference"] == pytest.approx(1.0)  # (1 + 2 + 0) / 3
    assert out["mean_a"] == 6 and out["mean_b"] == 7
    low, high = out["ci95"]
    assert 0 <= low <= 1 <= high <= 2
