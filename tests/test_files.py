"""Atomic writes: a reader sees the old file or the new one, never half of one, and a failed
write leaves no temporary file behind."""

from __future__ import annotations

import os

import pytest

from mcit.files import atomic_path, read_json, write_json_atomic, write_text_atomic


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "results.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2, "é": "ü"})
    assert read_json(target) == {"a": 2, "é": "ü"}
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_failed_write_keeps_old_content_and_removes_temporary(tmp_path, monkeypatch):
    target = tmp_path / "train.json"
    write_text_atomic(target, "old\n")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]


def test_read_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(
        ValueError, match=r"bad\.json: not valid JSON \(line 4, column 1: Expecting value\)$"
    ):
        read_json(bad)
    with pytest.raises(KeyError, match="missing.json: cannot read"):
        read_json(tmp_path / "missing.json", KeyError)


def test_file_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    # fsync before os.replace: after a crash the new name never points at unwritten data.
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        os, "replace", lambda a, b: events.append(f"replace {b.name}") or real_replace(a, b)
    )
    write_text_atomic(tmp_path / "a.json", "{}")
    with atomic_path(tmp_path / "w.bin") as tmp:
        tmp.write_bytes(b"\0" * 8)
    assert events == ["fsync", "replace a.json", "fsync", "replace w.bin"]
    assert (tmp_path / "w.bin").read_bytes() == b"\0" * 8
