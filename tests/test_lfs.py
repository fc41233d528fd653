"""LFS pointers: byte-identical to git-lfs, parsed strictly."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess

import pytest

from hubfs.lfs import LfsPointer, git_blob_sha1, is_valid_oid, sha256_file

OID = hashlib.sha256(b"hello").hexdigest()


def test_pointer_format_matches_git_lfs(tmp_path) -> None:
    data = b"some weights" * 1000
    (tmp_path / "w.bin").write_bytes(data)
    ours = LfsPointer(hashlib.sha256(data).hexdigest(), len(data)).to_bytes()
    if shutil.which("git-lfs"):
        theirs = subprocess.run(["git", "lfs", "pointer", "--file", str(tmp_path / "w.bin")],
                                capture_output=True, check=True).stdout
        assert ours == theirs
    assert ours == (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + hashlib.sha256(data).hexdigest().encode()
                    + b"\nsize 12000\n")


def test_parse_roundtrip_and_strictness() -> None:
    ptr = LfsPointer(OID, 5)
    assert LfsPointer.parse(ptr.to_bytes()) == ptr
    text = ptr.to_bytes()
    assert LfsPointer.parse(text.replace(b"size 5", b"size 05")) is None
    assert LfsPointer.parse(text + b"ext-0-foo sha256:x\n") is None
    assert LfsPointer.parse(text.upper()) is None
    assert LfsPointer.parse(text[:-1]) is None
    assert LfsPointer.parse(b"size 5\n" + text) is None
    assert LfsPointer.parse(b"x" * 2000) is None


def test_hash_helpers() -> None:
    assert git_blob_sha1(b"hello world") == "95d09f2b10159347eece71399a7e2e907ea3df4f"
    assert sha256_file(io.BytesIO(b"hello")) == (OID, 5)
    assert is_valid_oid(OID) and not is_valid_oid(OID.upper()) and not is_valid_oid("../x")


@pytest.mark.parametrize("oid", ["", "z" * 64, "a" * 63])
def test_invalid_oids(oid: str) -> None:
    assert not is_valid_oid(oid)
