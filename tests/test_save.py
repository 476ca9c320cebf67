"""Saving bodies: safe names inside the folder, whole files or none, flat memory."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path

import pytest
from servers import AppServer, RawServer
from yarl import URL

import asyncfetch
from asyncfetch import Fetcher, SyncFetcher
from asyncfetch._save import SaveDir, file_name


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_stream_saves_ok_bodies_and_keeps_the_others(
    server: AppServer, tmp_path: Path
) -> None:
    urls = [server.url("/bytes/1000"), server.url("/json"), server.url("/status/404")]
    async with Fetcher() as f:
        results = {
            str(r.url): r async for r in f.stream(urls, save_to=tmp_path / "out")
        }
    saved, data, missing = (results[u] for u in urls)
    assert saved.content == b""
    assert saved.path is not None
    assert saved.path.read_bytes() == b"x" * 1000
    assert saved.path.parent.parent == (tmp_path / "out").resolve()
    assert saved.path.parent.name == f"127.0.0.1_{server.port}"
    assert data.path is not None
    assert data.path.name.endswith(".json") or data.path.name.startswith("json-")
    assert (missing.status, missing.path, missing.content) == (404, None, b"status 404")
    assert len(files(tmp_path)) == 2


HOSTILE = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/escape",
    "/..%2f..%2fescape",
    "//etc/passwd",
    "/a/./b/../c",
    "/%00nul",
    "/.hidden",
    "/" + "long/" * 400 + "end.html",
    "/h%C3%A9llo w%C3%B6rld/%C3%BCn%C3%AFcode.txt",
    "/a?b=1",
    "/a?b=2",
    "/",
    "/a/b",
    "/a_b",
    "/a%2Fb",
    "/C:/Windows/system32",
    "/~user/.ssh/id_rsa",
]


def test_no_url_names_a_path_outside_the_folder(tmp_path: Path) -> None:
    root = SaveDir(tmp_path / "pages")
    paths = set()
    for hostile in HOSTILE:
        for url in (
            URL("http://Example.COM:8080" + hostile, encoded=True),  # as sent
            URL("http://example.com" + hostile),  # normalised by yarl
            URL("https://[::1]" + hostile, encoded=True),
        ):
            path = root.path_for(url)
            assert path.resolve().is_relative_to(root.root)
            assert path.parent.parent == root.root
            host, name = file_name(url)
            assert not name.startswith(".")
            assert not host.startswith(".")
            assert host not in ("", ".", "..")
            assert len(name) < 120
            paths.add((str(url), path))
    # different URLs, different files
    assert len({p for _, p in paths}) == len({u for u, _ in paths})


async def test_saving_real_bodies_under_strange_paths(
    server: AppServer, tmp_path: Path
) -> None:
    root = tmp_path / "pages"
    urls = [server.url("/any" + h) for h in HOSTILE if "%00" not in h]
    results = await asyncfetch.fetch_all(urls, save_to=root)
    # yarl resolves dot segments ("/any/../../etc" is "/etc"): those leave
    # /any and get a 404, which is not saved
    saved = [r for r in results if r.ok]
    assert len(saved) >= len(urls) - 2
    assert all(r.status == 404 and r.path is None for r in results if not r.ok)
    paths = [r.path for r in saved]
    assert all(p is not None and p.read_bytes() == b"ok" for p in paths)
    assert len(set(paths)) == len({str(r.url) for r in saved})
    assert not (tmp_path / "etc").exists()
    assert {p.parent for p in files(tmp_path)} == {
        root.resolve() / f"127.0.0.1_{server.port}"
    }


async def test_a_symlink_inside_the_folder_is_not_followed(
    server: AppServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / f"127.0.0.1_{server.port}").symlink_to(outside)
    [result] = await asyncfetch.fetch_all([server.url("/bytes/10")], save_to=root)
    assert isinstance(result.error, asyncfetch.SaveError)
    assert "symlink" in str(result.error)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/bytes/5000", asyncfetch.BodyTooLarge),
        ("/bytes/5000?chunked=1", asyncfetch.BodyTooLarge),
    ],
)
async def test_an_oversized_body_leaves_no_file(
    server: AppServer, tmp_path: Path, path: str, error: type[Exception]
) -> None:
    target = tmp_path / "file.bin"
    async with Fetcher(max_bytes=1000) as f:
        result = await f.download(server.url(path), target)
    assert isinstance(result.error, error)
    assert result.path is None
    assert files(tmp_path) == []


async def test_a_broken_body_leaves_no_file_and_the_old_one_untouched(
    raw_server: RawServer, tmp_path: Path
) -> None:
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")
    async with Fetcher(retries=0) as f:
        result = await f.download(raw_server.url("truncated"), target)
    assert isinstance(result.error, asyncfetch.ProtocolError)
    assert files(tmp_path) == [target]
    assert target.read_bytes() == b"old"


async def test_a_cancelled_download_leaves_no_file(
    server: AppServer, tmp_path: Path
) -> None:
    target = tmp_path / "slow.bin"
    async with Fetcher() as f:
        task = asyncio.ensure_future(
            f.download(server.url("/slow-body/100?delay_ms=500"), target)
        )
        await asyncio.sleep(0.3)
        assert [p.name.endswith(".part") for p in tmp_path.iterdir()] == [True]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert files(tmp_path) == []


async def test_download_replaces_a_file_atomically(
    server: AppServer, tmp_path: Path
) -> None:
    target = tmp_path / "sub" / "dir" / "f.bin"
    async with Fetcher() as f:
        result = await f.download(server.url("/bytes/7"), target)
        assert (result.path, result.content) == (target, b"")
        assert target.read_bytes() == b"x" * 7
        again = await f.download(server.url("/bytes/9"), target)
    assert again.path == target
    assert target.read_bytes() == b"x" * 9
    assert files(tmp_path) == [target]


async def test_a_write_failure_is_a_save_error(
    server: AppServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    async with Fetcher() as f:
        result = await f.download(server.url("/bytes/7"), blocker / "f.bin")
    assert isinstance(result.error, asyncfetch.SaveError)
    assert result.status == 200
    assert isinstance(result.error.__cause__, OSError)


async def test_a_bad_folder_fails_before_any_request(
    server: AppServer, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="save_to"):
        await asyncfetch.fetch_all([server.url("/ok")], save_to=not_a_dir)
    with pytest.raises(ValueError, match="save_to"):
        await asyncfetch.fetch_all([server.url("/ok")], save_to=not_a_dir / "sub")
    async with Fetcher() as f:
        with pytest.raises(ValueError, match="save_to"):
            f.stream([server.url("/ok")], save_to=not_a_dir)
    assert server.total_hits() == 0


async def test_parse_gets_the_path(server: AppServer, tmp_path: Path) -> None:
    def size_on_disk(result: asyncfetch.Result) -> int:
        assert result.content == b""
        assert result.path is not None
        return os.path.getsize(result.path)

    results = await asyncfetch.fetch_all(
        [server.url("/bytes/123")], save_to=tmp_path, parse=size_on_disk
    )
    assert results[0].parsed == 123


async def test_memory_stays_flat_while_saving_200_mib(
    server: AppServer, tmp_path: Path
) -> None:
    size = 200 * 1024 * 1024
    tracemalloc.start()
    try:
        async with Fetcher(max_bytes=None) as f:
            result = await f.download(
                server.url(f"/bytes/{size}?chunked=1"), tmp_path / "big.bin"
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result.error
    assert result.path is not None
    assert result.path.stat().st_size == size
    assert peak < 32 * 1024 * 1024


def test_sync_bridge_saves_too(server: AppServer, tmp_path: Path) -> None:
    results = asyncfetch.run([server.url("/bytes/3")], save_to=tmp_path / "a")
    assert results[0].path is not None
    with SyncFetcher() as f:
        assert (
            f.download(server.url("/bytes/4"), tmp_path / "b.bin").path
            == tmp_path / "b.bin"
        )
        [r] = list(f.stream([server.url("/bytes/5")], save_to=tmp_path / "c"))
        assert r.path is not None
        assert r.path.read_bytes() == b"xxxxx"
        [r] = f.fetch_all([server.url("/bytes/6")], save_to=tmp_path / "d")
        assert r.path is not None


async def test_download_outside_the_fetcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="download"):
        await Fetcher().download("http://127.0.0.1/", tmp_path / "x")


async def test_files_are_named_from_the_url_asked_for(
    server: AppServer, tmp_path: Path
) -> None:
    asked = server.url("/redirect/1")
    [result] = await asyncfetch.fetch_all([asked + "#frag"], save_to=tmp_path)
    assert str(result.url).endswith("/redirect/0")
    assert result.path == SaveDir(tmp_path).path_for(URL(asked))
    assert result.path.read_bytes() == b"done"
    assert oct(result.path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sync_stream_checks_the_folder_when_called(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with SyncFetcher() as f, pytest.raises(ValueError, match="save_to"):
        f.stream(["http://127.0.0.1/"], save_to=blocker)
