"""Hypothesis strategies for DynamoDB values in the export's wire form (``{"S": ...}``,
nested ``L`` and ``M``, sets, base64 binaries): shared by the decoder and line tests."""

from __future__ import annotations

import base64
from typing import Literal

from hypothesis import strategies as st

_NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=_NO_SURROGATES), min_size=1, max_size=8
)
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=_NO_SURROGATES), max_size=24
)
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
)
b64 = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())

scalars = st.one_of(
    texts.map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    b64.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(texts, min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(b64, min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(names, inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=8,
)
wire_items = st.builds(
    lambda pk, rest: {**rest, "pk": {"S": pk}},
    st.text(min_size=1, max_size=12),
    st.dictionaries(names, values, max_size=5),
)
