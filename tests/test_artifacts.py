"""artifacts.atomic_link: a file becomes another's (hard link, or a copy where links fail), never partial."""

from __future__ import annotations

import os

from sindiffusion.artifacts import atomic_link


def test_link_replaces_the_target_and_leaves_no_temporary(tmp_path):
    src = tmp_path / "a" / "model.pt"
    src.parent.mkdir()
    src.write_bytes(b"weights")
    dst = tmp_path / "b" / "model.pt"
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    assert atomic_link(src, dst) == dst
    assert dst.samefile(src) and dst.read_bytes() == b"weights"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.pt"]


def test_where_links_fail_it_copies(tmp_path, monkeypatch):
    src = tmp_path / "src.pt"
    src.write_bytes(b"weights")

    def no_links(*args):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    dst = atomic_link(src, tmp_path / "new" / "dst.pt")  # a missing parent folder is made
    assert dst.read_bytes() == b"weights" and not dst.samefile(src)
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.pt"]
