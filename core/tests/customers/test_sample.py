"""The planning sample's look-ups agree with numpy's plain ones."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.customers.sample import ListSample

NAMES = ["Smith", "Smithson", "Müller", "O'Brien", "", "Zoë", "smith"]


@given(
    column=st.lists(st.sampled_from(NAMES), min_size=1, max_size=60),
    values=st.lists(st.sampled_from([*NAMES, "Nobody"]), max_size=5),
)
def test_isin_finds_the_rows_numpy_finds(column, values):
    sample = ListSample(
        rows=1000, columns={"id": np.arange(len(column)), "last_name": np.array(column)}
    )
    expected = np.isin(np.array(column), np.array(values, dtype=str))
    assert (sample.isin("last_name", values) == expected).all()
    # Asked again, from the positions it keeps.
    assert (sample.isin("last_name", values) == expected).all()
