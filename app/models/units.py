"""Resource units of the DAG file: cpu, bytes, memory classes and durations, parsed and shown.

Every parser raises ValueError with a message a user can act on; none knows about files.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import TypeGuard

MAX_CORES_MCPU = 256_000
VALID_CORES_MCPU = frozenset(250 << k for k in range(11))  # 0.25, 0.5, 1, 2 … 256 cores
MEMORY_GIB_PER_CORE = {"lowmem": 1, "standard": 4, "highmem": 8}

_GIB = 1024**3
_BYTE_UNITS = {
    "": 1,
    "K": 1000,
    "k": 1000,
    "Ki": 1024,
    "M": 1000**2,
    "Mi": 1024**2,
    "G": 1000**3,
    "Gi": 1024**3,
    "T": 1000**4,
    "Ti": 1024**4,
}
_DISPLAY_BYTE_UNITS = (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))
_DURATION_UNITS_S = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_CPU_RE = re.compile(rf"({_NUMBER})(m?)")
_BYTES_RE = re.compile(rf"({_NUMBER})\s*([A-Za-z]{{0,2}}?)B?")
_DURATION_RE = re.compile(rf"(?:(?:{_NUMBER})\s*[dhms]\s*)+")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})\s*([dhms])")

_CPU_HELP = "use 0.25, 0.5, 1, 2, 4 … 256 cores or millicores like '500m'"
_BYTES_HELP = "use bytes like 1024, 500M or 2Gi (K=1000, Ki=1024; also M, Mi, G, Gi, T, Ti)"
_MEMORY_HELP = "use lowmem, standard, highmem or a size like 500M or 2Gi"
_DURATION_HELP = "use seconds (90) or a duration like '90s', '2m', '1h30m', '1d2h'"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_cpu_mcpu(value: object) -> int:
    """Parse a cpu request (1, 0.5, '2', '500m') into millicores: 250·2^k, at most 256 cores."""
    cores_mcpu = _to_mcpu(value)
    if cores_mcpu is None or cores_mcpu not in VALID_CORES_MCPU:
        raise ValueError(f"{value!r} is not a valid cpu: {_CPU_HELP}")
    return cores_mcpu


def _to_mcpu(value: object) -> int | None:
    if _is_number(value):
        cores_mcpu = Decimal(value) * 1000
    elif isinstance(value, str) and (match := _CPU_RE.fullmatch(value.strip())):
        number, milli = match.groups()
        cores_mcpu = Decimal(number) * (1 if milli else 1000)
    else:
        return None
    if not cores_mcpu.is_finite() or cores_mcpu != cores_mcpu.to_integral_value():
        return None
    return int(cores_mcpu)


def parse_bytes(value: object) -> int:
    """Parse a size (1024, '500M', '2Gi') into bytes; fractions of a unit round up to a byte."""
    size_bytes = _to_bytes(value)
    if size_bytes is None:
        raise ValueError(f"{value!r} is not a valid size: {_BYTES_HELP}")
    return size_bytes


def _to_bytes(value: object) -> int | None:
    if _is_number(value):
        if not math.isfinite(value) or value < 0 or value != int(value):
            return None
        return _at_most_max(int(value))
    if not isinstance(value, str) or not (match := _BYTES_RE.fullmatch(value.strip())):
        return None
    number, suffix = match.groups()
    unit_bytes = _BYTE_UNITS.get(suffix)
    if unit_bytes is None or (unit_bytes == 1 and "." in number):
        return None
    return _at_most_max(math.ceil(Decimal(number) * unit_bytes))


def _at_most_max(size_bytes: int) -> int | None:
    from app.models.limits import MAX_SIZE_BYTES  # limits loads YAML: not for `status`

    return size_bytes if size_bytes <= MAX_SIZE_BYTES else None  # none is that big


def parse_memory(value: object, cores_mcpu: int) -> tuple[int, str | None]:
    """Parse memory into (bytes, class): a class keyword scales with cores, a size is exact."""
    if isinstance(value, str) and (keyword := value.strip()) in MEMORY_GIB_PER_CORE:
        return MEMORY_GIB_PER_CORE[keyword] * _GIB * cores_mcpu // 1000, keyword
    memory_bytes = _to_bytes(value)
    if not memory_bytes:
        raise ValueError(f"{value!r} is not a valid memory: {_MEMORY_HELP}")
    return memory_bytes, None


def parse_duration_s(value: object) -> float:
    """Parse a positive duration (90, 2.5, '90s', '1h30m', '1d 2h') into seconds."""
    duration_s = _to_seconds(value)
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"{value!r} is not a valid duration: {_DURATION_HELP}")
    return duration_s


def _to_seconds(value: object) -> float | None:
    if _is_number(value):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(_NUMBER, text):
        return float(text)
    if not _DURATION_RE.fullmatch(text):
        return None
    parts = _DURATION_PART_RE.findall(text)
    sizes_s = [_DURATION_UNITS_S[unit] for _, unit in parts]
    if sizes_s != sorted(set(sizes_s), reverse=True):  # each unit once, largest first
        return None
    return sum(float(number) * size_s for (number, _), size_s in zip(parts, sizes_s, strict=True))


def _short_number(value: float, *, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_bytes(n: int) -> str:
    """Show a size in the file's syntax with binary units: '512', '1.5Ki', '2Gi'."""
    for suffix, unit_bytes in _DISPLAY_BYTE_UNITS:
        if n >= unit_bytes:
            return _short_number(n / unit_bytes, decimals=2) + suffix
    return str(n)


def format_size(n_bytes: float) -> str:
    """Show a size for people, in decimal units: '1.5 GB', '200 MB', '12 kB', '0 B'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{int(n_bytes)} B"


def format_duration(seconds: float) -> str:
    """Show a duration briefly: '2.5s', '1m 30s', '1h 30m', '1d 2h'."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    whole_s = int(seconds)
    days, rest_s = divmod(whole_s, 86_400)
    hours, rest_s = divmod(rest_s, 3_600)
    minutes, rest_s = divmod(rest_s, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    remainder_s = rest_s + (seconds - whole_s)
    if remainder_s or not parts:
        parts.append(_short_number(remainder_s, decimals=3) + "s")
    return " ".join(parts)


def format_mcpu(mcpu: int) -> str:
    """Show millicores as cores: 250 -> '0.25', 2000 -> '2'."""
    cores, rest_mcpu = divmod(mcpu, 1000)
    return str(cores) if not rest_mcpu else f"{cores}.{rest_mcpu:03d}".rstrip("0")
