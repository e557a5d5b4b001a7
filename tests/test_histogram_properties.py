"""Properties of the KPI histograms behind the dashboard rollups (hypothesis)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.kpis import bucket_width_at, histogram_of, histogram_percentile, histogram_within

durations = st.lists(st.floats(min_value=0, max_value=14_400, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(values=durations, q=st.sampled_from([50, 90, 95]))
def test_histogram_percentile_is_within_the_widest_bucket_involved(values, q):
    exact = float(np.percentile(values, q))
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    involved = (ordered[math.floor(rank)], ordered[math.ceil(rank)])
    tolerance = max(bucket_width_at(v) for v in involved) + 1e-6
    estimate = histogram_percentile(histogram_of(np.array(values)), q)
    assert abs(estimate - exact) <= tolerance


@settings(max_examples=200, deadline=None)
@given(values=durations, target=st.sampled_from([15, 20, 60, 90, 120, 600]))
def test_compliance_on_a_bucket_edge_is_exact(values, target):
    counted = histogram_within(histogram_of(np.array(values)), target)
    assert counted == sum(1 for v in values if v <= target)
