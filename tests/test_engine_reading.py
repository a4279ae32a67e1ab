"""The row engine's reading and typing, held to what they must give whatever is sent.

Two things here were made cheaper without changing what comes out (issue 21):
- the CSV reader no longer has Arrow check every cell as UTF-8 again: `open_delivery` has
  already decoded every byte to decide the file's encoding, and a Windows-1252 file is
  transcoded to UTF-8 before Arrow sees it. So the text read must still be exactly the
  file's text, in either encoding, with quotes, separators and line breaks inside cells;
- a boolean cell is compared with the agreed spellings rather than looked up in a table:
  the same value (and the same name) for any text.
"""

from __future__ import annotations

import csv
import io

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.intake.delivery_formats import open_delivery, text_batches
from schemas.contract import load_contracts
from schemas.row_checks import BOOLEAN_TEXT, parsed

HEADER = ["A", "B", "C"]
# Text with what a reader can get wrong: commas, quotes, line breaks, accents, symbols
# (all of them in Windows-1252 too, so one text can be sent in either encoding).
_CELL = st.text(alphabet=st.sampled_from('ab ,"\n\u00e9\u00a3\u2019\u20acx1'), max_size=8)


def _written(row: list[str]) -> str:
    """A row as an exporter writes it: a cell quoted (quotes doubled) only when it must be."""
    cells = []
    for cell in row:
        needs = any(c in cell for c in ',"\n')
        cells.append('"' + cell.replace('"', '""') + '"' if needs else cell)
    return ",".join(cells)


def _rows_as_python_reads_them(text: str) -> tuple[list[tuple[str | None, ...]], int]:
    """The rows with the header's number of fields (an empty cell is blank), and how many
    rows have another number, as Python's csv module reads the text."""
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    good = [tuple(cell or None for cell in row) for row in rows if len(row) == len(HEADER)]
    return good, sum(len(row) != len(HEADER) for row in rows)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        # Rows of 1 to 4 cells: the header has 3, so the others are broken rows. A one-cell
        # row is never empty (an empty line is no row to either reader).
        st.one_of(
            st.lists(_CELL, min_size=2, max_size=4),
            st.lists(_CELL.filter(bool), min_size=1, max_size=1),
        ),
        min_size=1,
        max_size=40,
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
    block=st.integers(min_value=256, max_value=4096),
)
def test_the_reader_gives_the_files_own_text_in_either_encoding(
    tmp_path_factory, rows, encoding, block
):
    """Whatever the cells hold (accents, the euro sign, quotes, commas, line breaks) and
    however the file is cut into reader blocks, the rows read are the rows in the file,
    character for character, and the rows with the wrong number of fields are reported."""
    text = "\n".join(_written(r) for r in [HEADER, *rows]) + "\n"
    path = tmp_path_factory.mktemp("read") / "d.csv"
    path.write_bytes(text.encode(encoding))
    delivery = open_delivery(path)
    windows = encoding == "cp1252" and not text.isascii()  # ASCII is UTF-8 too
    assert delivery.encoding == ("windows-1252" if windows else "utf-8")

    broken: list[int] = []

    def on_invalid_row(row) -> str:
        broken.append(row.number)
        return "skip"

    batches = list(text_batches(delivery, on_invalid_row, block_size=block))
    read = pl.concat(batches) if batches else pl.DataFrame(schema=dict.fromkeys(HEADER, pl.String))
    expected, broken_count = _rows_as_python_reads_them(text)
    assert read.rows() == expected
    assert len(broken) == broken_count


BOOLEAN_SPELLINGS = st.sampled_from([*BOOLEAN_TEXT, "true", "FALSE", " True", "True ", "1", ""])


@settings(deadline=None)  # a polars query per example: slow only on a loaded machine
@given(cells=st.lists(st.one_of(st.none(), BOOLEAN_SPELLINGS, st.text(max_size=6)), max_size=30))
def test_a_boolean_cell_is_its_agreed_spelling_or_nothing(cells):
    """Only the agreed spellings ("True", "False") are a boolean; any other text, however
    close ("true", " True", "1"), and a blank cell are null. The typed column keeps the
    delivered column's name."""
    column = load_contracts()["stop_and_search"].column("part_of_a_policing_operation")
    assert column.logical_type == "boolean"
    frame = pl.DataFrame({column.source_name: cells}, schema={column.source_name: pl.String})
    typed = frame.select(parsed(column, pl.col(column.source_name)))
    assert typed.columns == [column.source_name]
    assert typed.schema[column.source_name] == pl.Boolean
    assert typed[column.source_name].to_list() == [BOOLEAN_TEXT.get(c) for c in cells]
