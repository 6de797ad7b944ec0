from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError
from shared.hl7v2.datatypes import (
    CHECKED_TYPES,
    DATA_TYPE_ERROR,
    Hl7DataTypeError,
    Precision,
    check_coded_value,
    check_value,
    parse_dt,
    parse_dtm,
    parse_nm,
    parse_si,
    parse_tm,
    parse_ts,
)

# --- DTM / TS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "precision"),
    [
        ("2024", datetime(2024, 1, 1), Precision.YEAR),
        ("202403", datetime(2024, 3, 1), Precision.MONTH),
        ("20240305", datetime(2024, 3, 5), Precision.DAY),
        ("2024030514", datetime(2024, 3, 5, 14), Precision.HOUR),
        ("202403051422", datetime(2024, 3, 5, 14, 22), Precision.MINUTE),
        ("20240305142259", datetime(2024, 3, 5, 14, 22, 59), Precision.SECOND),
        ("20240229000000", datetime(2024, 2, 29), Precision.SECOND),
    ],
)
def test_dtm_precisions(text: str, expected: datetime, precision: Precision) -> None:
    parsed = parse_dtm(text)
    assert parsed.value == expected
    assert parsed.precision is precision
    assert parsed.tz_offset is None
    assert parsed.value.tzinfo is None
    assert not parsed.is_aware


def test_dtm_fraction_and_offset() -> None:
    parsed = parse_dtm("20240305142259.1234+0100")
    assert parsed.value == datetime(2024, 3, 5, 14, 22, 59, 123400, tzinfo=timezone(timedelta(hours=1)))
    assert parsed.value.utcoffset() == timedelta(hours=1)
    assert parsed.fraction_digits == 4
    assert parsed.tz_offset == timedelta(hours=1)
    assert parsed.isoformat() == "2024-03-05T14:22:59.1234+01:00"


def test_dtm_negative_offset_and_partial_precision_offset() -> None:
    parsed = parse_dtm("202403-0530")
    assert parsed.precision is Precision.MONTH
    assert parsed.tz_offset == -timedelta(hours=5, minutes=30)
    assert parsed.value.tzinfo is not None
    assert parsed.isoformat() == "2024-03-05:30"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240305", "2024-03-05"),
        ("2024030514", "2024-03-05T14"),
        ("202403051422+0000", "2024-03-05T14:22+00:00"),
        ("20240305142201.5", "2024-03-05T14:22:01.5"),
    ],
)
def test_dtm_isoformat_keeps_precision(text: str, iso: str) -> None:
    assert parse_dtm(text).isoformat() == iso


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "202",
        "20240",  # odd number of digits
        "2024030514225",
        "2024030514225901",  # 16 digits, no point
        "20241301",  # month 13
        "20240230",  # 30 February
        "20230229",  # not a leap year
        "2024030524",  # hour 24
        "202403051460",  # minute 60
        "20240305142260",  # leap second
        "20240305142259.12345",  # 5 fraction digits
        "202403051422.5",  # fraction without seconds
        "20240305142259.",  # point without digits
        "20240305+01",  # short offset
        "20240305+1500",  # offset beyond 14h
        "20240305+0160",
        "00000101",  # year 0
        "2024-03-05",
        "05/03/2024",
        " 20240305",
        "20240305 ",
        "\uff12\uff10\uff12\uff14",  # full-width digits
    ],
)
def test_dtm_rejects(text: str) -> None:
    with pytest.raises(Hl7DataTypeError) as excinfo:
        parse_dtm(text)
    err = excinfo.value
    assert isinstance(err, PermanentError)
    assert err.error_code == DATA_TYPE_ERROR == "102"
    if text.strip():
        assert text.strip() not in str(err)


def test_ts_reports_ts_type() -> None:
    assert parse_ts("20240305").precision is Precision.DAY
    with pytest.raises(Hl7DataTypeError) as excinfo:
        parse_ts("2024x")
    assert excinfo.value.datatype == "TS"


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(list(Precision)),
    st.one_of(st.none(), st.integers(min_value=-14 * 60, max_value=14 * 60)),
)
def test_dtm_round_trip(moment: datetime, precision: Precision, offset_minutes: int | None) -> None:
    full = (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    )
    text = full[: int(precision)]
    if offset_minutes is not None:
        sign = "+" if offset_minutes >= 0 else "-"
        text += f"{sign}{abs(offset_minutes) // 60:02d}{abs(offset_minutes) % 60:02d}"
    parsed = parse_dtm(text)
    assert parsed.precision is precision
    truncated = {
        Precision.YEAR: moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0),
        Precision.MONTH: moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        Precision.DAY: moment.replace(hour=0, minute=0, second=0, microsecond=0),
        Precision.HOUR: moment.replace(minute=0, second=0, microsecond=0),
        Precision.MINUTE: moment.replace(second=0, microsecond=0),
        Precision.SECOND: moment.replace(microsecond=0),
    }[precision]
    assert parsed.value.replace(tzinfo=None) == truncated
    if offset_minutes is None:
        assert parsed.value.tzinfo is None
    else:
        assert parsed.value.utcoffset() == timedelta(minutes=offset_minutes)


# --- DT / TM ----------------------------------------------------------------------------------------


def test_dt() -> None:
    assert parse_dt("2024").value == date(2024, 1, 1)
    assert parse_dt("2024").precision is Precision.YEAR
    assert parse_dt("202402").precision is Precision.MONTH
    parsed = parse_dt("20240229")
    assert parsed.value == date(2024, 2, 29)
    assert parsed.isoformat() == "2024-02-29"
    assert parse_dt("202402").isoformat() == "2024-02"


@pytest.mark.parametrize("text", ["", "20240229120000", "20230229", "2024001", "202400", "2024+0100", "abcd"])
def test_dt_rejects(text: str) -> None:
    with pytest.raises(Hl7DataTypeError):
        parse_dt(text)


def test_tm() -> None:
    parsed = parse_tm("1422")
    assert parsed.value == time(14, 22)
    assert parsed.precision is Precision.MINUTE
    full = parse_tm("142259.25-0300")
    assert full.value == time(14, 22, 59, 250000, tzinfo=timezone(-timedelta(hours=3)))
    assert full.precision is Precision.SECOND
    assert full.fraction_digits == 2
    assert parse_tm("00").precision is Precision.HOUR


@pytest.mark.parametrize(
    "text", ["", "2", "24", "1260", "126000", "1422.5", "142259.12345", "14:22", "1422+01"]
)
def test_tm_rejects(text: str) -> None:
    with pytest.raises(Hl7DataTypeError):
        parse_tm(text)


# --- NM / SI / ID / IS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("12", Decimal(12)),
        ("+12", Decimal(12)),
        ("-12.50", Decimal("-12.5")),
        ("007", Decimal(7)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("-0.001", Decimal("-0.001")),
    ],
)
def test_nm_accepts(text: str, expected: Decimal) -> None:
    assert parse_nm(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "-",
        ".",
        "1e5",
        "1E5",
        "1,000",
        "1 000",
        " 1",
        "1 ",
        "--1",
        "1.2.3",
        "NaN",
        "inf",
        "0x1F",
        "½",
    ],
)
def test_nm_rejects(text: str) -> None:
    with pytest.raises(Hl7DataTypeError):
        parse_nm(text)


@settings(max_examples=200, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9))
def test_nm_round_trip(value: Decimal) -> None:
    text = format(value, "f")
    assert parse_nm(text) == value


def test_si() -> None:
    assert parse_si("0") == 0
    assert parse_si("0001") == 1
    assert parse_si("9999") == 9999
    for bad in ["", "-1", "+1", "10000", "1.0", "a"]:
        with pytest.raises(Hl7DataTypeError):
            parse_si(bad)


def test_coded_values() -> None:
    check_coded_value("ID", "AL")
    check_coded_value("IS", "F", max_length=1)
    with pytest.raises(Hl7DataTypeError):
        check_coded_value("IS", "FEMALE", max_length=1)
    with pytest.raises(Hl7DataTypeError):
        check_coded_value("ID", "A\x07")
    with pytest.raises(Hl7DataTypeError):
        check_coded_value("ID", "")


def test_check_value_never_raises_and_hides_value() -> None:
    assert check_value("TS", "20240305") is None
    assert check_value("DTM", "20240305") is None
    reason = check_value("TS", "31/12/1999")
    assert reason is not None
    assert "1999" not in reason
    assert check_value("NM", "1e3") is not None
    assert check_value("SI", "12345") is not None
    assert check_value("IS", "MALE", max_length=1) is not None
    assert check_value("IS", "M", max_length=1) is None
    assert check_value("ST", "anything at all") is None  # not a checked type
    assert {"DTM", "TS", "DT", "TM", "NM", "SI", "ID", "IS"} == set(CHECKED_TYPES)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CHECKED_TYPES)), st.text(max_size=30))
def test_check_value_total(datatype: str, text: str) -> None:
    result = check_value(datatype, text)
    assert result is None or isinstance(result, str)
