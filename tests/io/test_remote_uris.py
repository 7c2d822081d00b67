"""astradup.io.remote: the one rule for "is this URI remote", on odd and hostile URIs."""
from __future__ import annotations

import os

import pytest

from astradup.io.remote import absolute, filesystem, is_remote, local_path, scheme_of, storage_options


@pytest.mark.parametrize("uri", [
    "s3://bucket/key.mp4", "S3://bucket/key.mp4", "gs://b/k", "https://host/v.mp4",
    "s3a://bucket/key", "git+ssh://host/x", "memory://x",
])
def test_a_scheme_other_than_file_is_remote(uri):
    assert is_remote(uri)
    assert local_path(uri) == uri  # never cut as if it were a local path
    assert absolute(uri) == uri  # never joined onto the working directory


@pytest.mark.parametrize("uri, path", [
    ("/data/videos/a.mp4", "/data/videos/a.mp4"),
    ("videos/a.mp4", "videos/a.mp4"),
    ("file:///data/a.mp4", "/data/a.mp4"),
    ("FILE:///data/a.mp4", "/data/a.mp4"),  # schemes are case-insensitive (RFC 3986)
    ("C:\\videos\\a.mp4", "C:\\videos\\a.mp4"),  # a Windows drive is not a scheme
    ("C://videos/a.mp4", "C://videos/a.mp4"),
    ("/data/odd://name.mp4", "/data/odd://name.mp4"),  # "://" inside a path is not a scheme
    ("./s3://bucket/key", "./s3://bucket/key"),
    (" s3://bucket/key", " s3://bucket/key"),  # the scheme must start the URI
    ("1x://a", "1x://a"),  # a scheme starts with a letter
    ("://nothing", "://nothing"),
    ("s3:/bucket/key", "s3:/bucket/key"),  # one slash: a relative path, not a URI
    ("", ""),
])
def test_paths_drives_and_file_uris_are_local(uri, path):
    assert not is_remote(uri)
    assert local_path(uri) == path


def test_scheme_of():
    assert scheme_of("S3://b/k") == "s3"
    assert scheme_of("file:///x") == "file"
    assert scheme_of("C://x") == "" and scheme_of("/x://y") == "" and scheme_of("plain") == ""


def test_absolute_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert absolute("shards") == str(tmp_path / "shards")
    assert absolute("~/shards") == str(tmp_path / "home" / "shards")
    assert absolute("file:///srv/shards") == "/srv/shards"
    assert absolute("file://rel") == str(tmp_path / "rel")
    assert absolute("odd://x") == "odd://x"
    assert os.path.isabs(absolute("C:x"))


def test_storage_options_take_the_endpoint_from_the_caller_or_the_environment(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert storage_options() == {}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:9000")
    assert storage_options() == {"client_kwargs": {"endpoint_url": "http://generic:9000"}}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3only:9000")
    assert storage_options() == {"client_kwargs": {"endpoint_url": "http://s3only:9000"}}
    assert storage_options("http://given:1") == {"client_kwargs": {"endpoint_url": "http://given:1"}}


def test_filesystem_is_the_one_for_the_scheme(tmp_path):
    fs = filesystem("memory://astradup-test/x")
    with fs.open("memory://astradup-test/x", "wb") as f:
        f.write(b"abc")
    assert filesystem("MEMORY://astradup-test/x").cat("memory://astradup-test/x") == b"abc"
    fs.rm("memory://astradup-test/x")


def test_absolute_paths_of_a_config(tmp_path, monkeypatch):
    from astradup.config import load_config
    from astradup.io.remote import absolute_paths

    monkeypatch.chdir(tmp_path)
    rel = load_config(overrides={"data_dir": "rel/data", "shards_dir": "file://rel/shards",
                                 "milvus_uri": "rel/m.db"}, environ={})
    got = absolute_paths(rel)
    assert (got.data_dir, got.shards_dir, got.milvus_uri) == (
        str(tmp_path / "rel/data"), str(tmp_path / "rel/shards"), str(tmp_path / "rel/m.db"))
    remote = load_config(overrides={"data_dir": str(tmp_path), "shards_dir": "s3://bucket/features",
                                    "milvus_uri": "http://127.0.0.1:19530"}, environ={})
    got = absolute_paths(remote)
    assert (got.shards_dir, got.milvus_uri) == ("s3://bucket/features", "http://127.0.0.1:19530")
