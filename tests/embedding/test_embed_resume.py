"""`kairos-curate embed` resumes: a run killed halfway keeps its finished work, the re-run does the rest.

The runs are real CLI processes; a test instrument slows the encoder down (so "halfway" exists)
and logs every forward pass, so the test knows when to send the signal and how much the re-run
computed. The resumed embeddings equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kairos_curate.io import load_embeddings

ROOT = Path(__file__).resolve().parents[2]
N_IMAGES, BATCH = 48, 8

INSTRUMENTED = r"""
import pathlib, sys, time
from kairos_curate.embedding.encoders import Encoder

log, delay = pathlib.Path(sys.argv[1]), float(sys.argv[2])
encode = Encoder.encode_uint8

def slow_encode(self, batch):
    out = encode(self, batch)
    time.sleep(delay)
    with open(log, "a") as handle:
        handle.write("batch\n")
    return out

Encoder.encode_uint8 = slow_encode
from kairos_curate.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _folder(root: Path) -> Path:
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        sub = "sub/" if i % 3 == 0 else ""
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{sub}im{i:03d}.png")
    return folder


def _argv(folder: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "embed",
        "--images",
        str(folder),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--image-size",
        "32",
        "--batch-size",
        str(BATCH),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def _start(log: Path, delay: float, argv: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-c", INSTRUMENTED, str(log), str(delay), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _batches(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _wait_for_batches(proc: subprocess.Popen[str], log: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _batches(log) < count:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def _resume(monkeypatch, capsys, folder: Path, out: Path, cache: Path) -> tuple[int, int]:
    """Re-run to completion (in this process); return (rows taken from the cache, forward passes)."""
    from kairos_curate.cli import main
    from kairos_curate.embedding.encoders import Encoder

    passes = []
    encode = Encoder.encode_uint8

    def counting(self, batch):
        passes.append(int(batch.shape[0]))
        return encode(self, batch)

    monkeypatch.setattr(Encoder, "encode_uint8", counting)
    capsys.readouterr()
    assert main(_argv(folder, out, cache)) == 0
    stdout = capsys.readouterr().out
    monkeypatch.undo()
    return int(re.search(r"\((\d+) from the cache\)", stdout).group(1)), len(passes)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The folder and its embeddings from one uninterrupted run (no cache)."""
    from kairos_curate.cli import main

    root = tmp_path_factory.mktemp("embed-resume")
    folder = _folder(root)
    out = root / "fresh.npz"
    assert (
        main(
            [
                "embed",
                "--images",
                str(folder),
                "--out",
                str(out),
                "--no-cache",
                "--image-size",
                "32",
                "--batch-size",
                str(BATCH),
                "--workers",
                "0",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    ids, emb = load_embeddings(out)
    return folder, ids, emb


def _check_resumed(from_cache: int, cached: int, passes: int, out: Path, fresh_ids, fresh) -> None:
    assert from_cache == cached  # the re-run found all of it ...
    assert passes == math.ceil((N_IMAGES - cached) / BATCH)  # ... and computed only the rest
    ids, emb = load_embeddings(out)
    assert ids.tolist() == fresh_ids.tolist()
    assert np.array_equal(emb, fresh)  # bit for bit the uninterrupted result


def test_sigterm_halfway_keeps_the_work_and_the_rerun_does_only_the_rest(tmp_path, uninterrupted, monkeypatch, capsys):
    """A separate `kairos-curate embed` process is killed (SIGTERM) from outside, mid-run."""
    folder, fresh_ids, fresh = uninterrupted
    out, cache, log = tmp_path / "emb.npz", tmp_path / "cache", tmp_path / "first.log"
    # --flush-seconds 600: nothing is written on a timer, so what survives was flushed on the signal
    proc = _start(log, 0.25, _argv(folder, out, cache, "--flush-seconds", "600"))
    _wait_for_batches(proc, log, 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    done_before = _batches(log)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    match = re.search(
        r"interrupted by SIGTERM; (\d+) of 48 images are cached in (\S+); run the same command "
        "again",
        stderr,
    )
    assert match, stderr
    cached = int(match.group(1))
    assert Path(match.group(2)) == cache
    assert 2 * BATCH <= cached <= done_before * BATCH < N_IMAGES  # everything finished was kept
    assert not out.exists()  # no half-written output
    from_cache, passes = _resume(monkeypatch, capsys, folder, out, cache)
    _check_resumed(from_cache, cached, passes, out, fresh_ids, fresh)


def test_ctrl_c_halfway_keeps_the_work(tmp_path, uninterrupted, monkeypatch, capsys):
    """SIGINT delivered to the running command (here: this process, after the 3rd batch)."""
    from kairos_curate.cli import main
    from kairos_curate.embedding.encoders import Encoder

    folder, fresh_ids, fresh = uninterrupted
    out, cache = tmp_path / "emb.npz", tmp_path / "cache"
    encode, passes = Encoder.encode_uint8, []

    def interrupting(self, batch):
        passes.append(1)
        result = encode(self, batch)
        if len(passes) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler right after this call
        return result

    monkeypatch.setattr(Encoder, "encode_uint8", interrupting)
    # A shell that starts pytest in the background (`cmd &`) makes it inherit SIGINT ignored, and
    # Python then keeps it ignored: install Python's own Ctrl-C handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(_argv(folder, out, cache, "--flush-seconds", "600"))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    err = capsys.readouterr().err
    monkeypatch.undo()
    match = re.search(r"interrupted by Ctrl-C \(SIGINT\); (\d+) of 48 images are cached", err)
    assert match, err
    cached = int(match.group(1))
    assert 2 * BATCH <= cached <= 3 * BATCH and not out.exists()
    from_cache, resumed_passes = _resume(monkeypatch, capsys, folder, out, cache)
    _check_resumed(from_cache, cached, resumed_passes, out, fresh_ids, fresh)


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path, uninterrupted, monkeypatch, capsys):
    """No handler runs on SIGKILL: the time-based flush bounds the loss."""
    folder, _, fresh = uninterrupted
    out, cache, log = tmp_path / "emb.npz", tmp_path / "cache", tmp_path / "first.log"
    proc = _start(log, 0.25, _argv(folder, out, cache, "--flush-seconds", "0.2"))
    _wait_for_batches(proc, log, 3)
    proc.kill()
    proc.communicate(timeout=60)
    done_before = _batches(log)
    from_cache, passes = _resume(monkeypatch, capsys, folder, out, cache)
    assert from_cache >= (done_before - 1) * BATCH > 0  # at most the batch in flight was lost
    assert passes == math.ceil((N_IMAGES - from_cache) / BATCH)
    assert np.array_equal(load_embeddings(out)[1], fresh)


def test_unreadable_image_keeps_the_finished_work_and_skip_unreadable_lists_it(tmp_path, capsys):
    from kairos_curate.cli import main

    folder = _folder(tmp_path)
    bad = folder / "im031.png"  # the 21st file in sorted order (multiples of 3 live in sub/)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out, cache = tmp_path / "emb.npz", tmp_path / "cache"
    assert main(_argv(folder, out, cache)) == 2
    err = capsys.readouterr().err
    assert "im031.png" in err and "--skip-unreadable" in err and "a re-run resumes" in err
    assert "Traceback" not in err and not out.exists()
    cached = int(re.search(r"the (\d+) images embedded so far are cached", err).group(1))
    assert cached >= 20  # every image before the bad one

    assert main(_argv(folder, out, cache, "--skip-unreadable")) == 0
    captured = capsys.readouterr()
    assert f"({cached} from the cache)" in captured.out
    assert "skipped 1 unreadable image" in captured.err
    listing = (tmp_path / "emb.unreadable.csv").read_text().splitlines()
    assert listing[0] == "id,path,reason" and listing[1].startswith("im031.png,") and len(listing) == 2
    ids, _ = load_embeddings(out)
    assert len(ids) == N_IMAGES - 1 and "im031.png" not in ids.tolist()


def test_the_cache_is_on_by_default_in_the_documented_place(tmp_path, monkeypatch, capsys):
    from kairos_curate.cli import main
    from kairos_curate.embedding import default_cache_dir

    monkeypatch.setenv("KAIROS_CACHE_DIR", str(tmp_path / "kc"))
    assert default_cache_dir() == tmp_path / "kc" / "embeddings"
    monkeypatch.delenv("KAIROS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kairos-curate" / "embeddings"
    monkeypatch.setenv("KAIROS_CACHE_DIR", str(tmp_path / "kc"))
    npz = tmp_path / "px.npz"
    np.savez(npz, ids=np.array(["a", "b", "c"]), pixels=np.zeros((3, 8, 8), np.uint8) + np.uint8(7))
    base = ["embed", "--images", str(npz), "--image-size", "32", "--device", "cpu", "--workers", "0", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "e.npz")]) == 0
    assert list((tmp_path / "kc" / "embeddings").rglob("shard-*.npz"))
    assert main([*base, "--out", str(tmp_path / "e2.npz")]) == 0
    assert "(3 from the cache)" in capsys.readouterr().out
    shards = sorted((tmp_path / "kc").rglob("shard-*.npz"))
    assert main([*base, "--out", str(tmp_path / "e3.npz"), "--no-cache"]) == 0
    assert "(0 from the cache)" in capsys.readouterr().out
    assert sorted((tmp_path / "kc").rglob("shard-*.npz")) == shards  # --no-cache wrote nothing
