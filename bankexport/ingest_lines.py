"""Byte-level helpers of the CSV ingest: source line numbers and GBK transcoding.

DuckDB reads a CSV's records in file order but does not say on which physical
line each record starts (a quoted cell may span lines, blank lines are skipped).
:func:`record_lines` finds that out with a vectorised scan of the file's bytes,
only for the records a person needs to look up (rows set aside, cells reported).
"""

from __future__ import annotations

import codecs
import logging
import mmap
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NL, _QUOTE, _CR = 10, 34, 13
_CHUNK = 64 * 1024 * 1024


def _terminators(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Byte offsets of record-ending newlines and their 0-based newline index.

    A newline ends a record when an even number of quote characters precede it
    (RFC 4180: doubled quotes inside a quoted cell keep the parity). The parity is
    a running uint8 sum (wrapping at 256 keeps it), so memory stays at one chunk.
    """
    size = path.stat().st_size
    ends, idx = [], []
    parity = 0
    newlines = 0
    buf = bytearray(_CHUNK)
    with path.open("rb") as f:
        off = 0
        while n := f.readinto(buf):
            arr = np.frombuffer(buf, np.uint8, count=n)
            nl = np.flatnonzero(arr == _NL)
            if len(nl) and buf.find(b'"', 0, n) < 0:  # no quote in this chunk: every newline ends a record
                even = np.ones(len(nl), bool) if parity == 0 else np.zeros(len(nl), bool)
                ends.append(nl[even] + off)
                idx.append(np.flatnonzero(even) + newlines)
            elif len(nl):
                quotes = np.cumsum(arr == _QUOTE, dtype=np.uint8)
                even = ((quotes[nl] + parity) & 1) == 0
                parity = (parity + int(quotes[-1])) & 1
                ends.append(nl[even] + off)
                idx.append(np.flatnonzero(even) + newlines)
            else:
                parity = (parity + int(np.count_nonzero(arr == _QUOTE))) & 1
            newlines += len(nl)
            off += n
            del arr
    if not ends:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), size
    return np.concatenate(ends).astype(np.int64), np.concatenate(idx).astype(np.int64), size


def record_lines(path: Path, ords: np.ndarray, reject_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Physical start lines (header = line 1) of data records.

    Args:
        path: the UTF-8 CSV file DuckDB read.
        ords: 0-based positions of records among those DuckDB accepted (its rowids).
        reject_bytes: DuckDB's ``line_byte_position`` (1-based start byte) of the
            records it could not parse, which are not among the accepted ones.

    Returns:
        (lines of ``ords``, lines of ``reject_bytes``), both int64 arrays.
    """
    term, term_idx, size = _terminators(path)
    starts = np.concatenate([[0], term + 1])
    lines = np.concatenate([[1], term_idx + 2])
    ends = np.concatenate([term, [size]])
    keep = starts < size
    starts, lines, ends = starts[keep], lines[keep], ends[keep]
    length = ends - starts
    blank = length == 0
    one = np.flatnonzero(length == 1)
    if len(one):
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            blank[one] = np.frombuffer(mm, np.uint8)[starts[one]] == _CR
    starts, lines = starts[~blank][1:], lines[~blank][1:]  # first non-blank record is the header
    rej = np.searchsorted(starts, np.asarray(reject_bytes, np.int64), side="right") - 1
    rej_lines = lines[np.clip(rej, 0, max(len(lines) - 1, 0))] if len(lines) else np.zeros(len(rej), np.int64)
    accepted = np.ones(len(starts), bool)
    accepted[rej[(rej >= 0)]] = False
    acc_lines = lines[accepted]
    ords = np.asarray(ords, np.int64)
    if len(ords) and ords.max() >= len(acc_lines):
        log.warning("%s: line numbers could not be matched to records; reporting record positions", path.name)
        return ords + 2, rej_lines
    return acc_lines[ords], rej_lines


def transcode_to_utf8(src: Path, dst: Path, encoding: str) -> None:
    """Copy ``src`` in ``encoding`` to ``dst`` in UTF-8, streaming.

    Bytes that are not valid in ``encoding`` are carried over unchanged
    (``surrogateescape``), so the row holding them stays invalid UTF-8 and DuckDB
    sets it aside as malformed instead of it being silently altered.
    """
    dec = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(16 * 1024 * 1024):
            fo.write(dec.decode(chunk).encode("utf-8", errors="surrogateescape"))
        fo.write(dec.decode(b"", final=True).encode("utf-8", errors="surrogateescape"))
