"""The content digest: equal item sets have equal digests, whatever the order,
split, attribute order, set order, binary form or number spelling; different
sets (one attribute changed) have different ones. From files and from a table."""

from __future__ import annotations

import base64
import datetime as dt
import random
from collections import Counter
from collections.abc import Hashable
from decimal import Decimal
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_backup import BackupConfig, run_backup
from ddb_backup.aws import AwsClients
from ddb_backup.backup import Polling
from ddb_backup.digest import ContentDigest, canonical_number, digest_items
from ddb_backup.errors import CorruptDataError
from ddb_backup.items import check_wire_item, from_botocore
from ddb_backup.storage import S3Storage
from ddb_backup.table_scan import digest_table
from ddb_backup.verify import verify_table_backup
from tests.support.backups import make_backup
from tests.support.data import create_table, every_type_items, put_items

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------

_numbers = st.builds(
    lambda sign, digits, exp: Decimal(f"{sign}{digits}E{exp}"),
    st.sampled_from(["", "-"]),
    st.integers(min_value=0, max_value=10**38 - 1),
    st.integers(min_value=-40, max_value=40),
)
_NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_names = st.text(
    st.characters(codec="utf-8", exclude_categories=_NO_SURROGATES), min_size=1, max_size=4
)
_strings = st.text(st.characters(codec="utf-8", exclude_categories=_NO_SURROGATES), max_size=6)
_bytes = st.binary(min_size=1, max_size=6)

_scalars = st.one_of(
    st.builds(lambda s: {"S": s}, _strings),
    st.builds(lambda d: {"N": str(d)}, _numbers),
    st.builds(lambda b: {"B": b}, _bytes),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(_strings, min_size=1, max_size=4)),
    # Distinct values (1 and 1.0 in one set is a duplicate to DynamoDB).
    st.builds(
        lambda s: {"NS": [str(d) for d in s]},
        st.lists(_numbers, min_size=1, max_size=4, unique_by=lambda d: d.normalize()),
    ),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(_bytes, min_size=1, max_size=4)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(_names, inner, max_size=3)),
    ),
    max_leaves=8,
)


def _items(n_max: int = 8) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Items (botocore form: bytes for B) with distinct ``pk``."""
    return st.lists(
        st.dictionaries(_names.filter(lambda n: n != "pk"), _values, max_size=4),
        max_size=n_max,
    ).map(lambda rows: [{"pk": {"S": f"k{i}"}, **row} for i, row in enumerate(rows)])


# -- respelling: the same items written differently ----------------------------------


def respell_number(text: str, rnd: random.Random) -> str:
    """Another spelling of the same number: leading zeros, a ``+``, trailing
    zeros, the point moved with the exponent adjusted."""
    sign, digits, exp = Decimal(text).as_tuple()
    assert isinstance(exp, int)
    m = "".join(map(str, digits))
    pad = rnd.randint(0, 3)
    m, exp = m + "0" * pad, exp - pad
    point = rnd.randint(0, len(m))
    e = exp + (len(m) - point)
    mantissa = f"{'0' * rnd.randint(0, 2)}{m[:point] or '0'}.{m[point:]}"
    prefix = "-" if sign else rnd.choice(["", "+"])
    return f"{prefix}{mantissa}E{e}" if e or rnd.random() < 0.5 else f"{prefix}{mantissa}"


def respell(value: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    ((t, v),) = value.items()
    if t == "N":
        return {"N": respell_number(v, rnd)}
    if t == "B":  # wire form (base64 text) or botocore form (bytes): one value
        return {"B": base64.b64encode(v).decode() if rnd.random() < 0.5 else v}
    if t == "NS":
        return {"NS": shuffled([respell_number(x, rnd) for x in v], rnd)}
    if t in ("SS", "BS"):
        return {t: shuffled(v, rnd)}
    if t == "L":
        return {"L": [respell(x, rnd) for x in v]}
    if t == "M":
        return {"M": respell_map(v, rnd)}
    return value


def respell_map(m: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    names = shuffled(list(m), rnd)
    return {n: respell(m[n], rnd) for n in names}


def shuffled(xs: list[Any], rnd: random.Random) -> list[Any]:
    xs = list(xs)
    rnd.shuffle(xs)
    return xs


def reference(value: dict[str, Any]) -> Hashable:
    """Python's own idea of DynamoDB equality (Decimal compares by value)."""
    ((t, v),) = value.items()
    if t == "N":
        return ("N", Decimal(v))
    if t == "NS":
        return ("NS", frozenset(Decimal(x) for x in v))
    if t == "B":
        return ("B", raw(v))
    if t == "BS":
        return ("BS", frozenset(map(raw, v)))
    if t == "SS":
        return ("SS", frozenset(v))
    if t == "L":
        return ("L", tuple(reference(x) for x in v))
    if t == "M":
        return ("M", frozenset((k, reference(x)) for k, x in v.items()))
    return (t, v)


def raw(v: bytes | str) -> bytes:
    return v if isinstance(v, bytes) else base64.b64decode(v)


def reference_set(items: list[dict[str, Any]]) -> Counter[Hashable]:
    return Counter(reference({"M": i}) for i in items)


# -- properties ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spellings", [["1", "1.0", "1E0", "+1", "01", "10E-1", "0.1e1", "1.", "100e-2"]]
)
def test_number_spellings_dynamodb_treats_as_equal_are_one(spellings: list[str]) -> None:
    assert {canonical_number(s) for s in spellings} == {"1E0"}
    assert {canonical_number(s) for s in ["0", "-0", "0.000", "0E9", "+0"]} == {"0"}
    # All 38 significant digits count (Decimal's default context keeps only 28).
    a, b = "1" * 37 + "1", "1" * 37 + "2"
    assert canonical_number(a) != canonical_number(b)
    assert canonical_number("-1.50") == canonical_number("-15E-1") != canonical_number("1.5")


@SETTINGS
@given(items=_items(), seed=st.integers(0, 2**32))
def test_same_items_any_order_split_and_spelling_give_one_digest(
    items: list[dict[str, Any]], seed: int
) -> None:
    rnd = random.Random(seed)
    other = [respell_map(i, rnd) for i in shuffled(items, rnd)]
    for item in other:  # the respelled items are still valid DynamoDB JSON
        check_wire_item(from_botocore(item), key="k", line_no=1)
    whole = digest_items(items)
    # Any split into "files", merged in any order.
    cuts = sorted(rnd.sample(range(len(other) + 1), k=min(2, len(other) + 1)))
    parts = [other[: cuts[0]], other[cuts[0] : cuts[-1]], other[cuts[-1] :]]
    merged = ContentDigest()
    for part in shuffled(parts, rnd):
        merged.merge(digest_items(part))
    assert (
        (merged.hexdigest, merged.count)
        == (whole.hexdigest, whole.count)
        == (
            digest_items(from_botocore(i) for i in other).hexdigest,
            len(items),
        )
    )


@SETTINGS
@given(a=_items(4), b=_items(4), seed=st.integers(0, 2**32))
def test_digests_are_equal_exactly_when_the_item_sets_are(
    a: list[dict[str, Any]], b: list[dict[str, Any]], seed: int
) -> None:
    rnd = random.Random(seed)
    if rnd.random() < 0.5:  # often the same set, respelled
        b = [respell_map(i, rnd) for i in shuffled(a, rnd)]
    same = reference_set(a) == reference_set(b)
    assert (digest_items(a).hexdigest == digest_items(b).hexdigest) == same


@SETTINGS
@given(items=_items().filter(bool), value=_values, seed=st.integers(0, 2**32))
def test_changing_one_attribute_changes_the_digest(
    items: list[dict[str, Any]], value: dict[str, Any], seed: int
) -> None:
    rnd = random.Random(seed)
    i = rnd.randrange(len(items))
    names = [n for n in items[i] if n != "pk"]
    name = rnd.choice(names) if names and rnd.random() < 0.7 else "new-attr"
    changed = [dict(x) for x in items]
    changed[i][name] = value
    if reference({"M": changed[i]}) == reference({"M": items[i]}):
        return  # drew the same value: nothing changed
    assert digest_items(changed).hexdigest != digest_items(items).hexdigest
    # Dropping an attribute changes it too.
    dropped = [dict(x) for x in items]
    dropped[i].pop("pk")
    assert digest_items(dropped).hexdigest != digest_items(items).hexdigest


def test_no_items_digest_to_zero_and_duplicates_do_not_cancel() -> None:
    item = {"pk": {"S": "a"}}
    assert digest_items([]).hexdigest == "0" * 32
    assert digest_items([item, item]).hexdigest != digest_items([]).hexdigest


# -- from files and from a live table -----------------------------------------------

DAY = dt.date(2026, 1, 2)
TABLE = "mfa-api_test_totp_global"


async def test_digest_of_export_files_equals_digest_of_the_table(
    aws: AwsClients, bucket: str
) -> None:
    items = every_type_items(23)
    await create_table(aws.dynamodb, TABLE)
    await put_items(aws.dynamodb, TABLE, items)
    manifest = await make_backup(aws.s3, bucket, "native-exports", DAY, {TABLE: items[::-1]})
    from_files = ContentDigest()
    verdict = await verify_table_backup(
        S3Storage(aws.s3, bucket), manifest.tables[0], digest=from_files
    )
    assert verdict.ok, verdict.errors
    live = await digest_table(aws.dynamodb, TABLE, segments=3)
    assert (from_files.hexdigest, from_files.count) == (live.hexdigest, live.count)
    assert live.hexdigest == digest_items(items).hexdigest
    # One changed attribute in the table: the digests differ.
    await aws.dynamodb.put_item(TableName=TABLE, Item={**items[5], "ratio": {"N": "1.26"}})
    assert (await digest_table(aws.dynamodb, TABLE)).hexdigest != from_files.hexdigest


async def test_daily_backup_records_the_tables_digest_in_its_manifest(
    aws: AwsClients, bucket: str
) -> None:
    items = every_type_items(9)
    await create_table(aws.dynamodb, TABLE)
    await put_items(aws.dynamodb, TABLE, items)
    cfg = BackupConfig(bucket=bucket, environment="test", tables=(TABLE,))
    result = await run_backup(
        cfg,
        aws,
        now=dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC),
        polling=Polling(initial=0.01, maximum=0.05, factor=2.0),
    )
    assert result.status_code == 200, result.body
    assert result.manifest is not None
    (table,) = result.manifest.tables
    assert table.content_digest == (await digest_table(aws.dynamodb, TABLE)).hexdigest
    assert table.content_digest == digest_items(items).hexdigest


def test_keys_differing_only_in_their_38th_digit_are_two_keys() -> None:
    """Decimal's default context keeps 28 digits: normalising with it merged such keys."""
    from ddb_backup.changes import key_identity
    from ddb_backup.verify import DistinctKeys

    a, b = "1" * 37 + "1", "1" * 37 + "2"
    distinct = DistinctKeys((("pk", "N"),))
    distinct.add({"pk": {"N": a}})
    distinct.add({"pk": {"N": b}})
    distinct.check(where="k")  # not refused as a duplicate
    distinct.add({"pk": {"N": a + ".0"}})
    with pytest.raises(CorruptDataError, match="same target key"):
        distinct.check(where="k")
    assert key_identity({"pk": {"N": a}}, ("pk",)) != key_identity({"pk": {"N": b}}, ("pk",))
    assert key_identity({"pk": {"N": "1.0"}}, ("pk",)) == key_identity({"pk": {"N": "1"}}, ("pk",))
