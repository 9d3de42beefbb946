"""Helpers for upload/import/report tests: upload a file, run a job to its end."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.helpers import wait_for


def upload_bytes(client: FlaskClient, token: str, content: bytes, filename: str, upload_id: str) -> dict[str, Any]:
    """Upload through the real route; returns the upload.

    The body is encoded in memory: for bodies over 500 KB the test client's own encoder
    spools to a temporary file that it never closes (an unraisable ResourceWarning)."""
    boundary, body = encode_multipart(
        {"upload_id": upload_id, "file": FileStorage(io.BytesIO(content), filename=filename)}
    )
    response = client.post(
        "/api/uploads",
        data=body,
        headers={"Authorization": f"Bearer {token}"},
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json()["upload"])


def run_job(client: FlaskClient, token: str, kind: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Submit a job and wait for its final snapshot."""
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/jobs", json={"kind": kind, "params": params}, headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job"]["id"]

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).get_json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_for(finished, timeout=timeout, interval=0.05))


# -- XLSX files built by hand (shared strings, as Excel writes them) ------------------------

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
SHARED_STRINGS = "xl/sharedStrings.xml"


def _column_letter(index: int) -> str:
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def workbook_parts() -> dict[str, bytes]:
    """Every part of a one-sheet workbook except the sheet and its shared strings."""
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    return {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{ct}.worksheet+xml"/>'
            f'<Override PartName="/{SHARED_STRINGS}" ContentType="{ct}.sharedStrings+xml"/>'
            "</Types>"
        ).encode(),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL_NS}">'
            f'<Relationship Id="rId1" Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ).encode(),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ).encode(),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL_NS}">'
            f'<Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ).encode(),
    }


def write_xlsx(
    path: Path, rows: Iterable[Sequence[str | int | float]], *, dimension: str | None = None, last_row: str = ""
) -> None:
    """A workbook whose first sheet holds ``rows``; text goes through the shared strings, as
    Excel writes it, and the sheet is streamed into the zip so that big files stay cheap.

    ``dimension`` is the sheet's declared range (``A1:B30000000``); ``last_row`` is raw
    XML written after the rows (``<row r="30000000"/>``: openpyxl makes up the gap)."""
    strings: dict[str, int] = {}
    declared = f'<dimension ref="{dimension}"/>' if dimension else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in workbook_parts().items():
            archive.writestr(name, content)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN_NS}">{declared}<sheetData>'.encode()
            )
            for number, row in enumerate(rows, start=1):
                cells = []
                for column, value in enumerate(row, start=1):
                    ref = f"{_column_letter(column)}{number}"
                    if isinstance(value, str):
                        index = strings.setdefault(value, len(strings))
                        cells.append(f'<c r="{ref}" t="s"><v>{index}</v></c>')
                    else:
                        cells.append(f'<c r="{ref}"><v>{value}</v></c>')
                sheet.write(f'<row r="{number}">{"".join(cells)}</row>'.encode())
            sheet.write(f"{last_row}</sheetData></worksheet>".encode())
        with archive.open(SHARED_STRINGS, "w", force_zip64=True) as shared:
            shared.write(f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN_NS}">'.encode())
            for text in strings:
                shared.write(f"<si><t>{escape(text)}</t></si>".encode())
            shared.write(b"</sst>")


def write_shared_strings_bomb(path: Path, inflated_bytes: int = 1 << 30) -> None:
    """A valid workbook whose shared-strings part is one string of ``inflated_bytes`` letters
    stored in about ``inflated_bytes / 1000`` bytes (1 GiB in ~1 MiB, in well under a second)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in workbook_parts().items():
            archive.writestr(name, content)
        archive.writestr(
            "xl/worksheets/sheet1.xml",
            f'<worksheet xmlns="{MAIN_NS}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
            "</sheetData></worksheet>",
        )
    chunk = b"a" * (1 << 20)
    head = f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN_NS}"><si><t>'.encode()
    path.write_bytes(
        _append_repeated_member(
            buffer.getvalue(), SHARED_STRINGS, head, chunk, -(-inflated_bytes // len(chunk)), b"</t></si></sst>"
        )
    )


def write_tall_sheet(path: Path, rows: int = 30_000_000) -> None:
    """A valid workbook whose sheet really holds ``rows`` rows of one number (no ``r``
    attributes, so every row is the same bytes): ~800 MB of sheet XML in about 1 MB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in workbook_parts().items():
            archive.writestr(name, content)
        archive.writestr(SHARED_STRINGS, f'<sst xmlns="{MAIN_NS}"/>')
    per_chunk = 40_000
    row = b"<row><c><v>1</v></c></row>"
    head = f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN_NS}"><sheetData>'.encode()
    path.write_bytes(
        _append_repeated_member(
            buffer.getvalue(), "xl/worksheets/sheet1.xml", head, row * per_chunk, rows // per_chunk,
            b"</sheetData></worksheet>",
        )
    )  # fmt: skip


def _append_repeated_member(entries: bytes, name: str, head: bytes, chunk: bytes, repeats: int, tail: bytes) -> bytes:
    """A zip archive (``entries``, as ``zipfile`` wrote it) with one more deflated member:
    ``head``, ``chunk`` ``repeats`` times, ``tail``.

    Deflating gigabytes takes seconds, so ``chunk`` is deflated once behind a full flush
    (which makes the block independent of what came before) and that block is repeated;
    the member is then appended to the zip by hand, like ``zipfile`` would.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed_head = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    compressed_tail = deflate.compress(tail) + deflate.flush()
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(tail, crc)
    body = compressed_head + block * repeats + compressed_tail
    size = len(head) + repeats * len(chunk) + len(tail)

    directory_at = struct.unpack("<I", entries[-6:-2])[0]
    directory, count = entries[directory_at:-22], struct.unpack("<H", entries[-12:-10])[0]
    encoded = name.encode()
    offset = directory_at
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(body), size, len(encoded), 0)
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(body), size, len(encoded), 0, 0, 0, 0, 0,
        offset,
    )  # fmt: skip
    new_directory = directory + central + encoded
    new_directory_at = offset + len(local) + len(encoded) + len(body)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count + 1, count + 1, len(new_directory), new_directory_at, 0)
    return entries[:directory_at] + local + encoded + body + new_directory + end
