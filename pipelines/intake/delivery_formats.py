"""Delivery formats: a landed file of any agreed format, as a header and all-text batches.

Agreed formats, told apart by the file's name (the landing copy keeps the suffix the force
gave it) and then checked against its bytes:

- `.csv`: UTF-8 (with or without a byte-order mark), or Windows-1252 as Excel's
  "CSV (Comma delimited)" writes it; LF or CRLF line ends.
- `.csv.gz`: the same, gzip-compressed. The whole stream is checked first, so a truncated
  upload is reported as truncated instead of failing half-way through validation.
- `.parquet`: every column read as text, so the contract's checks see the same thing they
  see in a CSV (timestamps as ISO 8601 with offset, booleans as True/False).

The encoding is decided over the whole file, never from its first bytes: UTF-8 is tried
strictly first; a file that is not UTF-8 is read as Windows-1252 only if every byte of it
decodes as Windows-1252 (its five undefined bytes never appear in real Excel exports).
Windows-1252 is accepted rather than rejected because it is what Excel on Windows writes
by default and it decodes unambiguously; unless the contract's `fileFormat.encoding`
lists it, the delivery carries a minor `file.encoding` breach asking for "CSV UTF-8".

A compressed file that expands without limit (a "decompression bomb", or an upload gone
wrong) is rejected as soon as it is seen to: past the contract's
`fileFormat.maxDecompressedBytes` (default 16 GiB), or, once past 64 MiB, past
`fileFormat.maxCompressionRatio` times its compressed size (default 100: CSV text
compresses 5 to 20 times). The same limits apply to a Parquet file's own pages, from its
footer. Its bytes stay in the landing area like any other rejected file's.

Anything else is `UnreadableFile` with a reason a person can act on and a rule id.
Memory stays bounded: files are streamed in blocks, never read whole.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.lake.register import Breach

CSV, CSV_GZ, PARQUET = "csv", "csv.gz", "parquet"
SUFFIXES = {".csv.gz": CSV_GZ, ".csv": CSV, ".parquet": PARQUET}
UTF8, WINDOWS_1252 = "utf-8", "windows-1252"
ENCODING_NAMES = {  # how a contract may spell an encoding
    "utf-8": UTF8,
    "utf8": UTF8,
    "windows-1252": WINDOWS_1252,
    "cp1252": WINDOWS_1252,
    "win-1252": WINDOWS_1252,
}
BLOCK = 1 << 20
HEAD = 1 << 20
BATCH_BYTES = 16 << 20
PARQUET_BATCH_ROWS = 65_536
AGREED = "CSV (.csv), gzip-compressed CSV (.csv.gz) or Parquet (.parquet)"

# Signatures of files that often arrive under an agreed name by mistake. A zip archive is
# told apart further by what it holds (`_zip_kind`): spreadsheets of both kinds are zips.
NOT_TEXT = (
    (b"PK\x03\x04", "a zip archive (an Excel workbook saved as .xlsx is one)"),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel or Office document"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "gzip-compressed but not named .csv.gz"),
    (b"\xff\xfe", "UTF-16 text (as Excel's 'Unicode Text' writes it)"),
    (b"\xfe\xff", "UTF-16 text"),
)


@dataclass(frozen=True)
class DecompressionLimits:
    """How far a compressed delivery may expand before it is rejected unread."""

    max_bytes: int = 16 << 30
    max_ratio: float = 100.0
    ratio_floor: int = 64 << 20  # small files may compress far; only big ones are a risk

    @classmethod
    def agreed(cls, file_format: dict | None) -> DecompressionLimits:
        """The limits a contract's `fileFormat` agrees (the defaults where it is silent)."""
        fmt = file_format or {}
        default = cls()
        return cls(
            max_bytes=int(fmt.get("maxDecompressedBytes") or default.max_bytes),
            max_ratio=float(fmt.get("maxCompressionRatio") or default.max_ratio),
        )

    def check(self, expanded: int, compressed: int, what: str) -> None:
        """UnreadableFile once `expanded` bytes from `compressed` are past either limit."""
        too_big = expanded > self.max_bytes
        too_far = expanded > self.ratio_floor and expanded > self.max_ratio * max(compressed, 1)
        if not (too_big or too_far):
            return
        limit = (
            f"the agreed limit of {_size(self.max_bytes)} (fileFormat.maxDecompressedBytes)"
            if too_big
            else f"{self.max_ratio:g} times its compressed size of {_size(compressed)} "
            "(fileFormat.maxCompressionRatio; CSV text compresses 5 to 20 times)"
        )
        raise UnreadableFile(
            f"The {what} expands to more than {limit}: it was not read further and nothing "
            "from it was published (a decompression bomb, or an export gone wrong). Its bytes "
            "are kept. If the data really is this large, send it uncompressed or agree a "
            "higher limit in the contract.",
            "file.decompressed_size",
        )


def error_words(exc: BaseException) -> str:
    """What a reader's error says, or its kind when it says nothing (never "()" in a reason)."""
    text = " ".join(str(exc).split())
    return text or f"{type(exc).__name__}, with no message"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


NO_LIMITS = DecompressionLimits()


class UnreadableFile(Exception):
    """The file cannot be read as any agreed format; `reason` says why in plain words."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


@dataclass(frozen=True)
class DeliveryFile:
    """A landed delivery, opened: its format, text encoding and delivered column names."""

    path: Path
    format: str  # csv, csv.gz or parquet
    encoding: str | None  # utf-8 or windows-1252 for CSV; None for Parquet
    header: tuple[str, ...]


def format_of(name: str) -> str | None:
    lowered = name.lower()
    for suffix, fmt in SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def _raw(path: Path, fmt: str) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="gzip" if fmt == CSV_GZ else None)


def _blocks(path: Path, fmt: str, limits: DecompressionLimits = NO_LIMITS) -> Iterator[bytes]:
    """The file's (decompressed) bytes in blocks; a broken gzip stream, or one expanding
    past `limits`, is UnreadableFile."""
    offset = 0
    if fmt != CSV_GZ:
        with open(path, "rb") as fh:
            while chunk := fh.read(BLOCK):
                yield chunk
        return
    compressed = path.stat().st_size
    try:
        with gzip.open(path, "rb") as fh:
            # read1: what could be decompressed is counted even if the stream breaks later.
            while chunk := fh.read1(BLOCK):
                offset += len(chunk)
                limits.check(offset, compressed, "gzip-compressed file")
                yield chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        what = "truncated" if isinstance(exc, EOFError) else "corrupt"
        raise UnreadableFile(
            f"The gzip-compressed file is {what}: it could be decompressed only as far as "
            f"byte {offset:,} ({error_words(exc)}). An upload may have been cut short; please "
            "send it again.",
            "file.compression",
        ) from exc


def _head(path: Path, fmt: str) -> bytes:
    head = b""
    blocks = _blocks(path, fmt)
    for chunk in blocks:
        head += chunk
        if len(head) >= HEAD:
            break
    blocks.close()
    return head[:HEAD]


# An OpenDocument file is a zip whose first member, stored uncompressed, is `mimetype`
# holding its media type; an Office Open XML file names its parts in local headers.
_OPENDOCUMENT = b"mimetypeapplication/vnd.oasis.opendocument."
_SAVE_FROM_CALC = (
    " Please save the sheet as CSV (in Calc: File, Save As, file type 'Text CSV', with a "
    "comma as the field delimiter and UTF-8 as the character set) and send that."
)
_SAVE_FROM_EXCEL = " Please save the sheet as 'CSV UTF-8 (Comma delimited)' and send that."
_ZIP_KINDS = (  # (what the archive holds, what it is, how to send it as agreed)
    (_OPENDOCUMENT + b"spreadsheet", "an OpenDocument spreadsheet (.ods), as LibreOffice "
     "or OpenOffice Calc saves it", _SAVE_FROM_CALC),
    (_OPENDOCUMENT, "an OpenDocument file (LibreOffice or OpenOffice)", ""),
    (b"xl/", "an Excel workbook (.xlsx)", _SAVE_FROM_EXCEL),
    (b"word/", "a Word document (.docx)", ""),
)  # fmt: skip


def _zip_kind(head: bytes) -> tuple[str, str]:
    """What a zip archive is, from its first bytes (a spreadsheet of either kind, or just a
    zip), and how to send it as agreed."""
    for holds, what, advice in _ZIP_KINDS:
        if holds.startswith(b"mimetype"):
            found = holds in head[:200]
        else:  # a member's name, in a local file header (30 bytes, then the name)
            found = re.search(b"PK\x03\x04.{26}" + re.escape(holds), head, re.DOTALL)
        if found:
            return what, advice
    return "a zip archive (an Excel workbook saved as .xlsx is one)", ""


def _check_head(head: bytes) -> None:
    """Reject what is plainly not CSV text, by its first bytes."""
    if not head.strip():
        raise UnreadableFile("The file is empty: it has no header and no rows.", "file.empty")
    if head.startswith(b"PK\x03\x04"):
        what, advice = _zip_kind(head)
        raise UnreadableFile(
            f"The file is {what}, not CSV text; the agreement asks for a CSV export.{advice}",
            "file.format",
        )
    for magic, what in NOT_TEXT:
        if head.startswith(magic):
            raise UnreadableFile(
                f"The file is {what}, not CSV text; the agreement asks for a CSV export.",
                "file.format",
            )
    if b"\x00" in head[:4096]:
        raise UnreadableFile(
            "The file holds binary data (NUL bytes), not CSV text; "
            "the agreement asks for a CSV export.",
            "file.format",
        )


# Landed files whose every byte intake found ASCII as it hashed them (`landed_as_ascii`),
# by what changes whenever a file's bytes may have: device, inode, size, modification and
# inode change times.
_ASCII_LANDINGS: set[tuple[int, int, int, int, int]] = set()


def _identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def landed_as_ascii(path: Path) -> None:
    """Note that the landed file at `path` (as it is now) is all ASCII, as intake found
    while hashing it: its encoding is then UTF-8 without reading it again (`_encoding`'s
    pass, 0.05 s of CPU at 2M rows), for a run that validates it in this process. The file
    touched in any way since (its times or size moved) is read as any other."""
    _ASCII_LANDINGS.add(_identity(os.stat(path)))


def _known_ascii(path: Path) -> bool:
    try:
        return _identity(os.stat(path)) in _ASCII_LANDINGS
    except OSError:
        return False


def _encoding(path: Path, fmt: str, limits: DecompressionLimits) -> str:
    """UTF-8 if every byte of the file is UTF-8, else Windows-1252 if every byte is that.

    This pass reads the whole (decompressed) file, so it is where a compressed file that
    expands past `limits` is stopped."""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        for chunk in _blocks(path, fmt, limits):
            if not chunk.isascii() or utf8.getstate()[0]:
                utf8.decode(chunk)
            offset += len(chunk)
        utf8.decode(b"", final=True)
        return UTF8
    except UnicodeDecodeError as exc:
        first_bad = offset + exc.start
    # Not UTF-8 (rare): a second pass, over the whole file, for Windows-1252.
    offset = 0
    for chunk in _blocks(path, fmt):
        try:
            chunk.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                f"The file is not UTF-8 text (byte {first_bad:,} cannot be decoded) and not "
                f"Windows-1252 either (byte {offset + exc.start:,}); the agreement asks for "
                "UTF-8 CSV.",
                "file.encoding",
            ) from exc
        offset += len(chunk)
    return WINDOWS_1252


def _header_from_text(head: bytes, encoding: str) -> list[str]:
    text = head.decode("utf-8-sig" if encoding == UTF8 else "cp1252", errors="replace")
    return next(csv.reader(io.StringIO(text)), [])


# Separators other exports use instead of commas, as a person would name them.
OTHER_SEPARATORS = {";": "semicolons (;)", "\t": "tabs", "|": "pipes (|)"}
NAMES_SHOWN = 6  # column names quoted in a reason before "and N more"


def quoted_names(names: list[str]) -> str:
    """A few names, quoted and trimmed, and how many more there are."""
    shown = ", ".join(quoted(n) for n in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more:,} more" if more > 0 else "")


def quoted(value: str, limit: int = 40) -> str:
    """A delivered value as a reason shows it: in quotes, control characters escaped, long
    values cut (a cell can hold anything, including a whole broken line)."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def _one_column(header: list[str]) -> str:
    named = [h for h in header if h.strip()]
    return f"one column, named {quoted(named[0])}" if named else "no named columns"


def _not_comma_separated(head: bytes, encoding: str, header: list[str]) -> str:
    """Why a CSV whose first line has fewer than two fields is no agreed table, in words the
    force can act on: which separator its first line uses instead of commas, if any."""
    text = head.decode("utf-8-sig" if encoding == UTF8 else "cp1252", errors="replace")
    first = text.splitlines()[0] if text.splitlines() else ""
    counts = {sep: first.count(sep) for sep in OTHER_SEPARATORS}
    separator = max(counts, key=counts.__getitem__)
    if counts[separator]:
        names = next(csv.reader(io.StringIO(first), delimiter=separator), [])
        return (
            f"The file is separated by {OTHER_SEPARATORS[separator]}, not commas: its first "
            f"line names {len(names)} columns ({quoted_names(names)}) with "
            f"{OTHER_SEPARATORS[separator].split()[0]} between them. The agreement asks for "
            "commas between fields; please export it again as comma-separated CSV (in Excel: "
            "'CSV UTF-8 (Comma delimited)')."
        )
    if not first.strip():
        return (
            "The file is not a comma-separated table: its first line is empty, and the "
            "agreement asks for a first line naming the columns."
        )
    return (
        f"The file is not a comma-separated table: its first line holds {_one_column(header)}, "
        "and no commas: the agreement asks for a first line naming the columns, separated "
        "by commas."
    )


def _parquet_header(path: Path, limits: DecompressionLimits) -> list[str]:
    try:
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        expanded = sum(
            file.metadata.row_group(i).total_byte_size for i in range(file.metadata.num_row_groups)
        )
    except (pa.ArrowException, OSError) as exc:
        size = path.stat().st_size
        what = "empty" if size == 0 else f"not a readable Parquet file ({error_words(exc)})"
        raise UnreadableFile(
            f"The file is named .parquet but is {what}. Nothing from this file was published.",
            "file.empty" if size == 0 else "file.format",
        ) from exc
    limits.check(expanded, path.stat().st_size, "Parquet file")
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise UnreadableFile(
            f"The Parquet file has nested columns ({', '.join(map(repr, nested))}); the "
            "agreement asks "
            "for one plain value per cell.",
            "file.format",
        )
    return list(schema.names)


def open_delivery(
    path: Path, name: str | None = None, limits: DecompressionLimits = NO_LIMITS
) -> DeliveryFile:
    """Open a landed delivery: decide its format and encoding and read its header.

    A compressed file expanding past `limits` (the contract's, see `DecompressionLimits`)
    is UnreadableFile. Landing copies never change, so what was decided about a file (by
    path, size and modification time) is remembered: validation opens a file several times.
    """
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise UnreadableFile(
            f"The file could not be opened: {error_words(exc)}.", "file.readable"
        ) from exc
    return _open(str(path), name or Path(path).name, stat.st_size, stat.st_mtime_ns, limits)


@functools.lru_cache(maxsize=64)
def _open(
    path_text: str, name: str, size: int, _mtime_ns: int, limits: DecompressionLimits
) -> DeliveryFile:
    path = Path(path_text)
    fmt = format_of(name)
    if fmt is None:
        with open(path, "rb") as fh:
            _check_head(fh.read(HEAD))  # a clearer reason when the bytes say what it is
        raise UnreadableFile(
            f"The file is named {Path(name).suffix or 'without a suffix'!s}; the agreement "
            f"accepts {AGREED}.",
            "file.format",
        )
    if fmt == PARQUET:
        header = _parquet_header(path, limits)
        encoding = None
    else:
        if size == 0:
            raise UnreadableFile("The file is empty: it has no header and no rows.", "file.empty")
        if fmt == CSV_GZ:
            with open(path, "rb") as fh:
                if fh.read(2) != b"\x1f\x8b":
                    raise UnreadableFile(
                        "The file is named .csv.gz but is not gzip-compressed.", "file.format"
                    )
        head = _head(path, fmt)
        _check_head(head)
        # (ASCII is UTF-8; a gzip file's ASCII would be of its compressed bytes.)
        known = fmt == CSV and _known_ascii(path)
        encoding = UTF8 if known else _encoding(path, fmt, limits)
        header = _header_from_text(head, encoding)
        if len(header) < 2:
            raise UnreadableFile(_not_comma_separated(head, encoding, header), "file.format")
    if len(header) < 2:
        raise UnreadableFile(
            f"The Parquet file has {_one_column(header)}; the agreement asks for a table "
            "with the agreed columns.",
            "file.format",
        )
    problem = header_problem(header)
    if problem:
        raise UnreadableFile(problem, "file.header")
    return DeliveryFile(path, fmt, encoding, tuple(header))


def column_positions(positions: list[int]) -> str:
    """Column numbers (from 1) in words: "column 7", "columns 7 to 10", "columns 2, 5 and 9"."""
    runs: list[list[int]] = []
    for n in sorted(positions):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [p for r in runs for p in ([f"{r[0]} to {r[-1]}"] if len(r) > 2 else map(str, r))]
    if len(positions) == 1:
        return f"column {positions[0]}"
    words = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"columns {words}"


def header_problem(header: list[str]) -> str | None:
    """Why the header cannot name the file's columns (repeated or blank names), or None.

    Blank names are counted by position: a sheet saved with empty trailing columns has
    several, and "the header names these columns more than once: ." would tell the force
    nothing it can fix. One blank name is not ambiguous, so it is left to the layout check
    (an unagreed column).
    """
    blank = [i for i, h in enumerate(header, 1) if not h.strip()]
    repeated = sorted({h for h in header if h.strip() and header.count(h) > 1})
    problems = []
    if len(blank) > 1:
        problems.append(
            f"{column_positions(blank)} have no name in the header (empty columns left "
            "at the edge of a spreadsheet often are): delete them, or name them, and send "
            "the file again"
        )
    for name in repeated:
        where = [i for i, h in enumerate(header, 1) if h == name]
        problems.append(
            f"the header names {name!r} more than once ({column_positions(where)}): each "
            "column must have a name of its own"
        )
    if not problems:
        return None
    text = "; ".join(problems)
    return text[0].upper() + text[1:] + "."


def text_stream(delivery: DeliveryFile) -> pa.NativeFile:
    """The CSV text of a delivery, decompressed and as UTF-8."""
    if delivery.format == PARQUET:
        raise ValueError("a Parquet delivery has no CSV text")
    stream = _raw(delivery.path, delivery.format)
    if delivery.encoding == WINDOWS_1252:
        stream = pa.transcoding_input_stream(stream, "cp1252", "utf-8")
    return stream


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, written the way the force's CSV exports write it."""
    columns = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            columns.append(col)
        elif dtype == pl.Boolean:
            columns.append(col.replace_strict({True: "True", False: "False"}, default=None))
        elif isinstance(dtype, pl.Datetime):
            fmt = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
            columns.append(col.dt.to_string(fmt))
        elif dtype == pl.Date:
            columns.append(col.dt.to_string("%Y-%m-%d"))
        elif dtype == pl.Binary:
            columns.append(col.cast(pl.String, strict=True))
        else:
            columns.append(col.cast(pl.String))
    return frame.select(
        [c.cast(pl.String).alias(n) for c, n in zip(columns, frame.columns, strict=True)]
    )


def _joined(blocks: list[pa.RecordBatch]) -> pl.DataFrame:
    """Arrow record batches as one polars frame, one chunk per column."""
    if len(blocks) == 1:
        return pl.from_arrow(blocks[0])
    return pl.from_arrow(pa.Table.from_batches(blocks).combine_chunks())


def text_batches(
    delivery: DeliveryFile,
    on_invalid_row: Callable[[pacsv.InvalidRow], str] | None = None,
    block_size: int = BATCH_BYTES,
    names: list[str] | None = None,
    joined: int = 1,
) -> Iterator[pl.DataFrame]:
    """The delivery's rows in bounded batches, every column text.

    Columns are named by `names` (in delivered order; default the header). Only an empty
    CSV cell is blank: "NA" or "null" are values. CSV rows with the wrong number of fields
    go to `on_invalid_row`, each before the batch it was found in is given. A CSV that
    turns out malformed part-way raises `pa.ArrowInvalid`; a file that cannot be read
    raises `UnreadableFile`.

    Each batch is `joined` blocks (of `block_size` bytes of CSV, or of PARQUET_BATCH_ROWS
    rows) in one chunk per column: polars' eager operations copy a frame of several
    chunks into one each time they read it.
    """
    header = list(names or delivery.header)
    if delivery.format == PARQUET:
        rows = 0
        pending: list[pl.DataFrame] = []
        try:
            for batch in pq.ParquetFile(delivery.path).iter_batches(
                batch_size=PARQUET_BATCH_ROWS, use_threads=False
            ):
                if batch.num_rows:
                    rows += batch.num_rows
                    frame = _as_text(pl.from_arrow(batch))
                    pending.append(frame.rename(dict(zip(frame.columns, header, strict=True))))
                    if len(pending) == joined:
                        yield pl.concat(pending, rechunk=True)
                        pending = []
            if pending:
                yield pl.concat(pending, rechunk=True)
        except (pa.ArrowException, OSError, pl.exceptions.PolarsError) as exc:
            raise UnreadableFile(
                f"The Parquet file could not be read after row {rows:,}: {error_words(exc)}. "
                "Nothing from this file was published.",
                "file.format",
            ) from exc
        return
    reader = pacsv.open_csv(
        text_stream(delivery),
        read_options=pacsv.ReadOptions(
            column_names=header, skip_rows=1, block_size=block_size, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=on_invalid_row
        ),
        # Everything as text, and only an empty cell is blank: "NA" or "null" are values.
        # Not checked as UTF-8 again: `open_delivery` decoded every byte of the file to
        # decide its encoding (a Windows-1252 file is transcoded to UTF-8 above), and the
        # landing copy never changes. Arrow's check was a fifth of the reader thread's
        # samples; without it, reading a 2M-row month takes about 0.1 s less CPU.
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            check_utf8=False,
        ),
    )
    # The blocks are joined by Arrow before polars takes them: a sixth less CPU than
    # joining polars frames (measured on a 2M-row month, 1.49 s against 1.77 s to read it).
    blocks: list[pa.RecordBatch] = []
    try:
        for batch in reader:
            if batch.num_rows:
                blocks.append(batch)
                if len(blocks) == joined:
                    yield _joined(blocks)
                    blocks = []
        if blocks:
            yield _joined(blocks)
    except (OSError, EOFError) as exc:
        raise UnreadableFile(
            f"The file could not be read to its end: {error_words(exc)}. Nothing from this file "
            "was published.",
            "file.readable",
        ) from exc


def accepted_encodings(file_format: dict | None) -> set[str]:
    """The encodings a contract's `fileFormat.encoding` agrees (UTF-8 if it says nothing)."""
    raw = (file_format or {}).get("encoding") or UTF8
    names = raw if isinstance(raw, list) else [raw]
    return {ENCODING_NAMES.get(str(n).lower(), str(n).lower()) for n in names} | {UTF8}


def format_breaches(
    contract,
    period: str,
    delivery_id: str,
    delivery: DeliveryFile,
    rows_checked: int,
) -> list[Breach]:
    """Breaches of the agreed file format that did not stop the delivery being read."""
    agreed = accepted_encodings(contract.file_format)
    if delivery.encoding is None or delivery.encoding in agreed:
        return []
    return [
        Breach(
            contract=contract.name,
            contract_version=contract.version,
            period=period,
            delivery_id=delivery_id,
            rule="file.encoding",
            clause=f"{contract.path.name}: customProperties.fileFormat.encoding",
            severity="minor",
            action="delivery read as " + delivery.encoding,
            failing_rows=0,
            rows_checked=rows_checked,
            detail=f"The file is {delivery.encoding.title()} text (as Excel's 'CSV (Comma "
            "delimited)' writes it), not the agreed UTF-8. It was read as "
            f"{delivery.encoding.title()}; please export as 'CSV UTF-8' next time.",
        )
    ]
