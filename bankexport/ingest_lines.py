"""Byte-level helpers of the CSV ingest: source line numbers and GBK transcoding.

DuckDB reads a CSV's records in file order but does not say on which physical
line each record starts (a quoted cell may span lines, blank lines are skipped).
:func:`record_lines` finds that out, only for the records a person needs to look
up (rows set aside, cells reported): when the file has as many lines as records
(so every record is one physical line) the line is the record's position, which
one newline-counting pass proves; otherwise a vectorised scan of the file's bytes
follows the quotes. It also gives each such record's byte span, so that its
original cells can be read back from the file (:func:`read_spans`) instead of
carrying the raw text of every row through the validation.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

_NL, _QUOTE, _CR = 10, 34, 13
# Read buffer of the byte scans: small enough to stay in the CPU cache, across the several numpy
# passes made over each chunk (docs/decisions/010-ingest-line-scanning.md).
_CHUNK = 1024 * 1024


def _record_batches(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (start byte, start line, end byte) of the non-blank records of ``path``, chunk by chunk.

    A record's end is the byte after its terminating newline (the file size for a
    last record without one).

    A newline ends a record when an even number of quote characters precede it
    (RFC 4180: doubled quotes inside a quoted cell keep the parity). Memory stays
    at one chunk and its newline and quote positions.
    Blank records (empty or a lone CR) are skipped, as DuckDB's reader does.
    """
    size = path.stat().st_size
    parity = 0
    newlines = 0
    rec_start, rec_line = 0, 1  # the record in progress
    last_byte = -1  # last byte of the previous chunk
    buf = bytearray(_CHUNK)
    with path.open("rb") as f:
        off = 0
        while n := f.readinto(buf):
            arr = np.frombuffer(buf, np.uint8, count=n)
            nl = np.flatnonzero(arr == _NL)
            if not len(nl):
                parity = (parity + int(np.count_nonzero(arr == _QUOTE))) & 1
            else:
                if buf.find(b'"', 0, n) < 0:  # no quote here: parity holds for every newline
                    even = np.full(len(nl), parity == 0)
                else:
                    quotes = np.flatnonzero(arr == _QUOTE)
                    even = ((np.searchsorted(quotes, nl) + parity) & 1) == 0
                    parity = (parity + len(quotes)) & 1
                term = nl[even]
                if len(term):
                    starts = np.concatenate([[rec_start], term[:-1] + 1 + off])
                    lines = np.concatenate([[rec_line], np.flatnonzero(even)[:-1] + newlines + 2])
                    length = term + off - starts
                    before = np.where(term > 0, arr[np.maximum(term - 1, 0)], last_byte)
                    blank = (length == 0) | ((length == 1) & (before == _CR))
                    rec_start = int(term[-1]) + 1 + off
                    rec_line = int(np.flatnonzero(even)[-1]) + newlines + 2
                    yield starts[~blank], lines[~blank], (term + 1 + off)[~blank]
            newlines += len(nl)
            last_byte = int(arr[-1])
            off += n
            del arr
    if rec_start < size and not (size - rec_start == 1 and last_byte == _CR):
        yield np.array([rec_start], np.int64), np.array([rec_line], np.int64), np.array([size], np.int64)


class _Chunks(NamedTuple):
    """Where the scan chunks of a file start and how many newlines precede each (one more
    entry than chunks: the file size and the total), to find a line's bytes again."""

    offsets: np.ndarray
    newlines_before: np.ndarray


def _one_line_records(path: Path, n_records: int, reject_bytes: np.ndarray) -> tuple[np.ndarray, _Chunks] | None:
    """Lines of the rejected records when every record is exactly one physical line, else None.

    Each record covers at least one line, a blank line none, and the header line is
    one record when an even number of quotes precede its first newline. So when the
    file has exactly ``1 + n_records`` lines (``n_records``: the records DuckDB read,
    accepted or rejected), no record spans lines (no quoted newline) and no blank
    line was skipped: data line ``n`` (header = 1) is the ``n - 1``-th record.
    Quotes elsewhere do not matter. One bounded-memory pass counting newlines; it
    also returns each chunk's offset and newline count, for :func:`_line_spans`.
    """
    rej = np.sort(np.asarray(reject_bytes, np.int64) - 1)  # 0-based first byte of each rejected record
    rej_lines = np.zeros(len(rej), np.int64)
    newlines = 0
    last_byte = -1
    header_end = -1  # offset of the header's newline
    r_i = 0
    offsets, counts = [], []
    buf = bytearray(_CHUNK)
    with path.open("rb") as f:
        off = 0
        while n := f.readinto(buf):
            if header_end < 0:
                nl = buf.find(b"\n", 0, n)
                if nl < 0 or buf.count(b'"', 0, nl) % 2:
                    return None  # header longer than a chunk, or a quoted newline in it
                header_end = off + nl
            offsets.append(off)
            counts.append(newlines)
            arr = np.frombuffer(buf, np.uint8, count=n)
            r_hi = int(np.searchsorted(rej, off + n, side="left"))
            if r_hi > r_i:  # a rejected record's line: newlines before its first byte, plus one
                nl_at = np.flatnonzero(arr == _NL)
                rej_lines[r_i:r_hi] = newlines + np.searchsorted(nl_at, rej[r_i:r_hi] - off, side="left") + 1
                newlines += len(nl_at)
                r_i = r_hi
            else:
                newlines += int(np.count_nonzero(arr == _NL))
            last_byte = int(arr[-1])
            off += n
            del arr
    if header_end < 0 or r_i < len(rej):
        return None
    lines = newlines + (last_byte != _NL)
    if lines != 1 + n_records:
        return None
    out = np.empty_like(rej_lines)
    out[np.argsort(np.asarray(reject_bytes, np.int64), kind="stable")] = rej_lines
    chunks = _Chunks(np.array([*offsets, off], np.int64), np.array([*counts, newlines], np.int64))
    return out, chunks


def _line_spans(path: Path, lines: np.ndarray, chunks: _Chunks) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) bytes of physical ``lines`` (header = 1; end is after the newline,
    or the file size), reading again only the chunks that hold their newlines."""
    lines = np.asarray(lines, np.int64)
    total = int(chunks.newlines_before[-1])
    size = int(chunks.offsets[-1])
    # newline k (0-based) ends line k + 1; line L starts after newline L - 2 and ends after newline L - 1
    want = np.unique(np.concatenate([lines - 2, lines - 1]))
    want = want[(want >= 0) & (want < total)]
    pos = np.zeros(len(want), np.int64)
    chunk_of = np.searchsorted(chunks.newlines_before, want, side="right") - 1
    with path.open("rb") as f:
        for c in np.unique(chunk_of):
            f.seek(int(chunks.offsets[c]))
            arr = np.frombuffer(f.read(int(chunks.offsets[c + 1] - chunks.offsets[c])), np.uint8)
            nl_at = np.flatnonzero(arr == _NL)
            sel = chunk_of == c
            pos[sel] = chunks.offsets[c] + nl_at[want[sel] - chunks.newlines_before[c]]

    def after_newline(k: np.ndarray, none: int) -> np.ndarray:
        ok = (k >= 0) & (k < total)
        out = np.full(len(k), none, np.int64)
        out[ok] = pos[np.searchsorted(want, k[ok])] + 1
        return out

    return after_newline(lines - 2, 0), after_newline(lines - 1, size)


class Located(NamedTuple):
    """Where records are in a CSV file: start lines (header = 1) and byte spans."""

    lines: np.ndarray  # start line of each requested accepted record
    rej_lines: np.ndarray  # start line of each record the reader rejected
    starts: np.ndarray  # first byte of each requested accepted record
    ends: np.ndarray  # byte after its terminating newline (the file size if it has none)


def record_lines(path: Path, ords: np.ndarray, reject_bytes: np.ndarray, n_accepted: int | None = None) -> Located:
    """Physical start lines and byte spans of data records, in one bounded-memory pass.

    Args:
        path: the UTF-8 CSV file DuckDB read.
        ords: 0-based positions of records among those DuckDB accepted (its rowids).
        reject_bytes: DuckDB's ``line_byte_position`` of the records it could not
            parse (1-based; it may point at blank lines just before the record), one
            per record. Those records are not among the accepted ones.
        n_accepted: how many records DuckDB accepted; when given, a file whose records
            are one line each is recognised by counting its lines (no quote scan).

    Returns:
        Lines and spans of ``ords`` and lines of ``reject_bytes``, int64 arrays in the
        given orders; a position that cannot be matched gets line ``ord + 2`` / ``-1``,
        an empty span and a warning.
    """
    ords = np.asarray(ords, np.int64)
    if n_accepted is not None:
        one = _one_line_records(path, n_accepted + len(reject_bytes), np.asarray(reject_bytes, np.int64))
        if one is not None:
            rej_lines, chunks = one
            # accepted record k is the k-th data line that is not a rejected one
            gaps = np.sort(rej_lines - 2)
            k = np.searchsorted(gaps - np.arange(len(gaps)), ords, side="right")
            lines = ords + k + 2
            return Located(lines, rej_lines, *_line_spans(path, lines, chunks))
    o_order = np.argsort(ords, kind="stable")
    o_sorted = ords[o_order]
    rej = np.asarray(reject_bytes, np.int64) - 1  # 0-based: the record starts at or after it
    r_order = np.argsort(rej, kind="stable")
    r_sorted = rej[r_order]
    out_o = o_sorted + 2
    out_s = np.zeros(len(ords), np.int64)
    out_e = np.zeros(len(ords), np.int64)
    out_r = np.full(len(rej), -1, np.int64)
    o_i = r_i = 0
    accepted = 0
    header = True
    for starts, lines, ends in _record_batches(path):
        if header and len(starts):  # the first non-blank record is the header
            starts, lines, ends, header = starts[1:], lines[1:], ends[1:], False
        if not len(starts):
            continue
        is_rej = np.zeros(len(starts), bool)
        r_hi = int(np.searchsorted(r_sorted, starts[-1], side="right"))
        if r_hi > r_i:
            at = np.searchsorted(starts, r_sorted[r_i:r_hi], side="left")
            out_r[r_i:r_hi] = lines[at]
            is_rej[at] = True
            r_i = r_hi
        acc = ~is_rej
        n_acc = int(np.count_nonzero(acc))
        o_hi = int(np.searchsorted(o_sorted, accepted + n_acc, side="left"))
        if o_hi > o_i:
            at = o_sorted[o_i:o_hi] - accepted
            out_o[o_i:o_hi] = lines[acc][at]
            out_s[o_i:o_hi] = starts[acc][at]
            out_e[o_i:o_hi] = ends[acc][at]
            o_i = o_hi
        accepted += n_acc
    if o_i < len(ords) or r_i < len(rej):
        log.warning("%s: %d line numbers could not be matched to records", path.name, len(ords) - o_i + len(rej) - r_i)
    res = [np.empty_like(a) for a in (out_o, out_s, out_e)]
    for r, a in zip(res, (out_o, out_s, out_e), strict=True):
        r[o_order] = a
    res_r = np.empty_like(out_r)
    res_r[r_order] = out_r
    return Located(res[0], res_r, res[1], res[2])


def read_spans(path: Path, starts: np.ndarray, ends: np.ndarray, n_columns: int, dst: Path) -> bool:
    """Copy the records at byte spans ``[starts, ends)`` of CSV ``path`` to ``dst``, in the
    given order, under a header of ``n_columns`` placeholder names, so that the reader that
    read ``path`` can read the same records again, cell for cell, from a small file.

    Line endings stay as they are (a last record without a newline gets the header's).
    Returns False when a span is empty (a record that was not located).
    """
    if len(starts) and not bool(np.all(ends > starts)):
        return False
    with path.open("rb") as f:
        first = f.readline()
        eol = b"\r\n" if first.endswith(b"\r\n") else b"\n"
        with dst.open("wb") as out:
            out.write(",".join(f"c{i}" for i in range(n_columns)).encode() + eol)
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                f.seek(a)
                rec = f.read(b - a)
                out.write(rec if rec.endswith(b"\n") else rec + eol)
    return True


def transcode_to_utf8(src: Path, dst: Path, encoding: str) -> Path:
    """The UTF-8 file to read for ``src`` in ``encoding``: ``src`` itself when it is
    pure ASCII (the same bytes in GBK and UTF-8), else ``dst``, a streamed copy.

    Bytes that are not valid in ``encoding`` are carried over unchanged
    (``surrogateescape``), so the row holding them stays invalid UTF-8 and DuckDB
    sets it aside as malformed instead of it being silently altered. Chunks that
    are pure ASCII (with no multi-byte character open across the chunk border) are
    copied as they are: the ASCII check is far cheaper than Python's GBK decoder
    (decision 010), and large tables (transactions, balances) hold no text.
    """
    with src.open("rb") as fi:
        while chunk := fi.read(_CHUNK):
            if not chunk.isascii():
                break
        else:
            return src
    dec = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(16 * 1024 * 1024):
            if chunk.isascii() and not dec.getstate()[0]:
                fo.write(chunk)
            else:
                fo.write(dec.decode(chunk).encode("utf-8", errors="surrogateescape"))
        fo.write(dec.decode(b"", final=True).encode("utf-8", errors="surrogateescape"))
    return dst


def count_byte(path: Path, byte: bytes, start: int = 0, end: int | None = None) -> int:
    """How many times ``byte`` occurs in ``path`` from byte ``start`` up to ``end`` (default: the end)."""
    start = max(start, 0)
    left = (path.stat().st_size if end is None else end) - start
    n = 0
    with path.open("rb") as f:
        f.seek(start)
        while left > 0 and (chunk := f.read(min(16 * _CHUNK, left))):
            n += chunk.count(byte)
            left -= len(chunk)
    return n


def other_encoding(path: Path, declared: str) -> str | None:
    """The encoding a file is valid in when it is not valid in its ``declared`` one: ``"gbk"``
    for a file declared UTF-8, ``"utf-8"`` for one declared GBK; None when it is not valid in
    that one either (then its bad records are just bad). Decodes the file's non-ASCII chunks;
    called only for a file that already has records invalid in its declared encoding."""
    other = "gbk" if declared == "utf-8" else "utf-8"
    dec = codecs.getincrementaldecoder(other)("strict")
    try:
        with path.open("rb") as f:
            while chunk := f.read(16 * _CHUNK):
                if not chunk.isascii() or dec.getstate()[0]:
                    dec.decode(chunk)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    return other
