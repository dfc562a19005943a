"""The shoot's ZIP in parts under an upload limit: every file once, in order, each part within
the limit (a file too big alone gets a part of its own)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from bot.core.archives import ARCHIVE_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES, plan_parts, write_parts


def test_parts_keep_the_order_and_the_limit() -> None:
    each = ENTRY_OVERHEAD_BYTES + 1000
    limit = ARCHIVE_OVERHEAD_BYTES + 2 * each
    assert plan_parts([1000] * 5, limit) == [[0, 1], [2, 3], [4]]
    assert plan_parts([1000] * 2, 10**9) == [[0, 1]]
    assert plan_parts([10**6, 10, 10], limit) == [[0], [1, 2]]
    assert plan_parts([], limit) == []


def test_written_parts_hold_every_file_once_within_the_limit(tmp_path: Path) -> None:
    files = []
    for index in range(7):
        path = tmp_path / f"{index}.png"
        path.write_bytes(bytes([index]) * (3000 + index))
        files.append(path)
    limit = ARCHIVE_OVERHEAD_BYTES + 3 * (3006 + ENTRY_OVERHEAD_BYTES)
    parts = write_parts(files, tmp_path / "zip", "shoot-1", limit)
    assert [part.name for part in parts] == ["shoot-1-1.zip", "shoot-1-2.zip", "shoot-1-3.zip"]
    contents = []
    for part in parts:
        assert part.stat().st_size <= limit
        with zipfile.ZipFile(part) as archive:
            contents += [archive.read(name) for name in archive.namelist()]
    assert contents == [path.read_bytes() for path in files]
    [single] = write_parts(files[:2], tmp_path / "one", "shoot-2", 10**9)
    assert single.name == "shoot-2.zip"
