"""Table-driven tests of the resource unit parsers and formatters."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.models.units import (
    VALID_CORES_MCPU,
    format_bytes,
    format_duration,
    format_mcpu,
    parse_bytes,
    parse_cpu_mcpu,
    parse_duration_s,
    parse_memory,
)

GIB = 1024**3


@pytest.mark.parametrize(
    ("value", "cores_mcpu"),
    [
        (1, 1000),
        (2, 2000),
        (256, 256_000),
        (0.25, 250),
        (0.5, 500),
        (4.0, 4000),
        ("2", 2000),
        ("0.25", 250),
        (" 1 ", 1000),
        ("500m", 500),
        ("250m", 250),
        ("8000m", 8000),
        (".5", 500),
    ],
)
def test_parse_cpu_mcpu_accepts(value: object, cores_mcpu: int) -> None:
    assert parse_cpu_mcpu(value) == cores_mcpu


@pytest.mark.parametrize(
    "value",
    [0, 3, 0.3, 0.125, 512, "300m", "1.5", "100m", "2 cores", "", "-1", -1, True, None, [1],
     math.inf, math.nan, "1e3m"],
)  # fmt: skip
def test_parse_cpu_mcpu_refuses(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a valid cpu: use 0\.25, 0\.5, 1, 2, 4"):
        parse_cpu_mcpu(value)


def test_parse_cpu_mcpu_message_names_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        parse_cpu_mcpu("300m")
    assert str(caught.value).startswith("'300m' is not a valid cpu")
    assert "millicores like '500m'" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "size_bytes"),
    [
        (0, 0),
        (1024, 1024),
        (5.0, 5),
        ("1024", 1024),
        ("1K", 1000),
        ("1k", 1000),
        ("1Ki", 1024),
        ("500M", 500_000_000),
        ("2Mi", 2 * 1024**2),
        ("1G", 10**9),
        ("2Gi", 2 * GIB),
        ("1T", 10**12),
        ("1Ti", 1024**4),
        ("1.5Gi", 3 * GIB // 2),
        ("1.1Ki", 1127),  # a fraction of a byte rounds up
        ("2GiB", 2 * GIB),
        ("512B", 512),
        (" 3 Gi ", 3 * GIB),
    ],
)
def test_parse_bytes_accepts(value: object, size_bytes: int) -> None:
    assert parse_bytes(value) == size_bytes


@pytest.mark.parametrize(
    "value",
    ["1.5", "2gi", "2GI", "1Pi", "-1", -1, 1.5, "2 X", "", "Gi", None, True, [1], math.inf],
)
def test_parse_bytes_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="is not a valid size: use bytes like"):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("value", "cores_mcpu", "expected"),
    [
        ("lowmem", 1000, (GIB, "lowmem")),
        ("standard", 1000, (4 * GIB, "standard")),
        ("highmem", 1000, (8 * GIB, "highmem")),
        ("standard", 2000, (8 * GIB, "standard")),
        ("standard", 250, (GIB, "standard")),
        ("lowmem", 250, (GIB // 4, "lowmem")),
        ("highmem", 16_000, (128 * GIB, "highmem")),
        ("2Gi", 8000, (2 * GIB, None)),
        (1024, 1000, (1024, None)),
    ],
)
def test_parse_memory_accepts(
    value: object, cores_mcpu: int, expected: tuple[int, str | None]
) -> None:
    assert parse_memory(value, cores_mcpu) == expected


@pytest.mark.parametrize("value", ["huge", "Standard", "0", 0, -5, "1.5", None, True, ["2Gi"]])
def test_parse_memory_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="is not a valid memory: use lowmem, standard, highmem"):
        parse_memory(value, 1000)


@pytest.mark.parametrize(
    ("value", "duration_s"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("0.5", 0.5),
        ("90s", 90.0),
        ("2.5s", 2.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1d2h", 93_600.0),
        ("1d 2h 3m 4s", 93_784.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration_s_accepts(value: object, duration_s: float) -> None:
    assert parse_duration_s(value) == duration_s


@pytest.mark.parametrize(
    "value",
    [0, -1, "0s", "-5s", "30m1h", "1h1h", "1w", "1 hour", "h", "", "100ms", True, None, [60],
     math.inf, math.nan],
)  # fmt: skip
def test_parse_duration_s_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="is not a valid duration: use seconds"):
        parse_duration_s(value)


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [
        (0, "0"),
        (512, "512"),
        (1024, "1Ki"),
        (1536, "1.5Ki"),
        (2 * GIB, "2Gi"),
        (10**9, "953.67Mi"),
        (3 * 1024**4, "3Ti"),
    ],
)
def test_format_bytes(size_bytes: int, text: str) -> None:
    assert format_bytes(size_bytes) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (2.5, "2.5s"),
        (59, "59s"),
        (90, "1m 30s"),
        (3600, "1h"),
        (5400, "1h 30m"),
        (93_600, "1d 2h"),
        (3725.5, "1h 2m 5.5s"),
        (-90, "-1m 30s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("mcpu", "text"), [(250, "0.25"), (500, "0.5"), (1000, "1"), (1500, "1.5"), (256_000, "256")]
)
def test_format_mcpu(mcpu: int, text: str) -> None:
    assert format_mcpu(mcpu) == text


@given(st.sampled_from(sorted(VALID_CORES_MCPU)))
def test_format_mcpu_parses_back(mcpu: int) -> None:
    assert parse_cpu_mcpu(format_mcpu(mcpu)) == mcpu


@given(st.floats(min_value=0.001, max_value=10**7, allow_nan=False))
def test_format_duration_parses_back_closely(seconds: float) -> None:
    assert parse_duration_s(format_duration(seconds)) == pytest.approx(seconds, abs=0.001)


@given(st.integers(min_value=0, max_value=2**50))
def test_format_bytes_parses_back_closely(size_bytes: int) -> None:
    assert parse_bytes(format_bytes(size_bytes)) == pytest.approx(size_bytes, rel=0.01)
