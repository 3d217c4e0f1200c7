"""The file commands never destroy a file they were not asked to write, and fail with one line.

Each case is one a careless or hostile user can cause: the output is the
input (also through a link), a device, FIFO or directory, a symbolic link, a
read-only or full disk, a rate a container cannot hold, a closed or broken
standard output, a kill in the middle of a run.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import data_wavs, long_speech

from codec import atomic, audio
from codec.cli import EXIT_BROKEN_PIPE, EXIT_TERMINATED, main
from codec.fileformat import compress

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A copy of the first mono speech clip of tests/data (tests may try to overwrite it)."""
    path = tmp_path / "speech.wav"
    path.write_bytes(data_wavs(channels=1)[0].read_bytes())
    return path


@pytest.fixture
def packed(clip: Path, model_dir: Path, tmp_path: Path) -> Path:
    """``clip`` compressed."""
    path = tmp_path / "speech.rvq"
    assert _run("compress", clip, path, "--model", model_dir, "--quiet") == 0
    return path


def _run(*args: object) -> int:
    return main([str(a) for a in args])


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str, message: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"codec {command}: error: "), err
    assert message in err, err


def _command(*args: object) -> list[str]:
    return [sys.executable, "-m", "codec.cli", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


# ----- the output is the input --------------------------------------------------------------------
@pytest.mark.parametrize("link", ["same-name", "symlink", "hard-link"])
@pytest.mark.parametrize("command", ["compress", "decompress", "truncate"])
def test_output_that_is_the_input_is_refused(
    command: str, link: str, clip: Path, packed: Path, model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = {"compress": clip, "decompress": tmp_path / "packed.wav", "truncate": packed}[command]
    if command == "decompress":  # a compressed file named .wav, so that the output format is accepted
        source.write_bytes(packed.read_bytes())
    output = {"same-name": source, "symlink": tmp_path / f"link{source.suffix}",
              "hard-link": tmp_path / f"hard{source.suffix}"}[link]
    if link == "symlink":
        output.symlink_to(source.name)
    elif link == "hard-link":
        os.link(source, output)
    before = source.read_bytes()
    extra = ["--kbps", compress.load_model(model_dir).codec.bandwidths_kbps[0]] if command == "truncate" else []
    capsys.readouterr()
    assert _run(command, source, output, *extra, *(["--model", model_dir] if command != "truncate" else [])) == 2
    _one_error_line(capsys, command, f"is the input {source}")
    assert source.read_bytes() == before
    assert output.is_symlink() == (link == "symlink")


# ----- special outputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_special_outputs_are_refused_by_name(
    kind: str, clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = Path(os.devnull) if kind == "device" else tmp_path / "out.rvq"
    if kind == "fifo":
        os.mkfifo(output)
    elif kind == "directory":
        output.mkdir()
    capsys.readouterr()
    assert _run("compress", clip, output, "--model", model_dir, "--quiet") == 2
    name = {"device": "a character device", "fifo": "a FIFO", "directory": "a directory"}[kind]
    _one_error_line(capsys, "compress", f"it is {name}")
    mode = os.stat(output).st_mode
    assert {"device": stat.S_ISCHR, "fifo": stat.S_ISFIFO, "directory": stat.S_ISDIR}[kind](mode)


def test_a_symlink_output_is_followed_and_kept(clip: Path, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "real.rvq").write_bytes(b"old")
    (tmp_path / "link.rvq").symlink_to("real.rvq")
    assert _run("compress", clip, tmp_path / "link.rvq", "--model", model_dir, "--quiet") == 0
    assert (tmp_path / "link.rvq").is_symlink()
    assert (tmp_path / "real.rvq").read_bytes()[:4] == b"RVQC"
    (tmp_path / "dangling.rvq").symlink_to("new.rvq")
    assert _run("compress", clip, tmp_path / "dangling.rvq", "--model", model_dir, "--quiet") == 0
    assert (tmp_path / "dangling.rvq").is_symlink() and (tmp_path / "new.rvq").read_bytes()[:4] == b"RVQC"


def test_a_replaced_file_keeps_its_permissions(clip: Path, model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "private.rvq"
    output.write_bytes(b"old")
    output.chmod(0o600)
    assert _run("compress", clip, output, "--model", model_dir, "--quiet") == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o600 and output.read_bytes()[:4] == b"RVQC"


# ----- temporary files ------------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed(clip: Path, model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.rvq"
    stale = tmp_path / f".out.rvq.{_dead_pid()}-abcdefgh.tmp"
    live = tmp_path / f".out.rvq.{os.getpid()}-abcdefgh.tmp"  # a writer that still runs
    other = tmp_path / ".out.rvq.someone-else.tmp"  # not named by this package
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    assert _run("compress", clip, output, "--model", model_dir, "--quiet") == 0
    assert not stale.exists() and live.exists() and other.exists()


def test_sigterm_removes_the_temporary_file(model_dir: Path, tmp_path: Path) -> None:
    source = long_speech(tmp_path, 60)
    output = tmp_path / "out.rvq"
    output.write_bytes(b"previous content")
    proc = subprocess.Popen(_command("compress", source, output, "--model", model_dir, "--quiet"), env=_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.rvq.*.tmp")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err
    assert err == "codec compress: terminated\n"
    assert output.read_bytes() == b"previous content"
    assert not list(tmp_path.glob(".out.rvq.*"))


# ----- operating-system errors ----------------------------------------------------------------------
def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_full_disk_is_one_line(
    command: str, clip: Path, packed: Path, model_dir: Path, tmp_path: Path
) -> None:
    source = clip if command == "compress" else packed
    output = tmp_path / ("out.rvq" if command == "compress" else "out.wav")
    result = subprocess.run(_command(command, source, output, "--model", model_dir, "--quiet"), check=False, env=_env(),
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"codec {command}: error: ")
    assert "cannot write" in result.stderr or "File too large" in result.stderr  # the output or a spool file
    assert not output.exists() and not list(tmp_path.glob(".out.*"))


def test_inputs_that_are_directories_or_empty_stdin(
    clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "folder.wav").mkdir()
    assert _run("compress", tmp_path / "folder.wav", tmp_path / "x.rvq", "--model", model_dir) == 2
    _one_error_line(capsys, "compress", "is a directory")
    assert _run("compress", tmp_path / "missing.wav", tmp_path / "x.rvq", "--model", model_dir) == 2
    _one_error_line(capsys, "compress", "does not exist")
    assert _run("compress", clip, tmp_path / "missing" / "x.rvq", "--model", model_dir) == 2
    _one_error_line(capsys, "compress", f"folder {tmp_path / 'missing'} does not exist")
    with open(os.devnull, "rb") as empty:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": empty})())
        assert _run("compress", "-", tmp_path / "x.rvq", "--model", model_dir, "--quiet") == 2
    _one_error_line(capsys, "compress", "standard input is empty")


# ----- sample rates that containers cannot hold -----------------------------------------------------
def test_high_rates_are_refused_before_any_work(
    clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, rate = sf.read(str(clip), dtype="float32")
    high = tmp_path / "768k.wav"
    sf.write(str(high), audio.resample(torch.from_numpy(data), rate, 768_000).numpy(), 768_000)
    assert _run("compress", high, tmp_path / "high.rvq", "--model", model_dir, "--quiet") == 0
    capsys.readouterr()
    for suffix, message in ((".ogg", "OGG holds rates up to 192000 Hz"), (".flac", "FLAC holds rates up to 655350")):
        assert _run("decompress", tmp_path / "high.rvq", tmp_path / f"high{suffix}", "--model", model_dir) == 2
        _one_error_line(capsys, "decompress", message)
        assert not (tmp_path / f"high{suffix}").exists()
    assert _run("decompress", tmp_path / "high.rvq", tmp_path / "high.wav", "--model", model_dir, "--quiet") == 0
    assert sf.info(str(tmp_path / "high.wav")).samplerate == 768_000

    sf.write(str(tmp_path / "2mhz.wav"), np.zeros(4096, dtype="float32"), 2_000_000)
    monkeypatch.setattr(compress, "encode_chunks", lambda *a: pytest.fail("encoded a file it must refuse"))
    assert _run("compress", tmp_path / "2mhz.wav", tmp_path / "x.rvq", "--model", model_dir, "--quiet") == 2
    _one_error_line(capsys, "compress", "the format holds rates up to 1048576 Hz")


# ----- standard output ------------------------------------------------------------------------------
def test_stdout_leaves_no_temporary_file(
    packed: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    result = subprocess.run(_command("decompress", packed, "-", "--model", model_dir, "--quiet"),
                            check=False, env={**_env(), "TMPDIR": str(private)}, capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stdout[:4] == b"RIFF"
    assert list(private.iterdir()) == []


def test_broken_pipe_and_closed_stdout(model_dir: Path, tmp_path: Path) -> None:
    packed = tmp_path / "long.rvq"  # decoded, more than a pipe's buffer holds
    assert _run("compress", long_speech(tmp_path, 8), packed, "--model", model_dir, "--quiet") == 0
    decompress = " ".join(_command("decompress", packed, "-", "--model", model_dir, "--quiet"))
    broken = subprocess.run(["bash", "-c", f"{decompress} | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}"],
                            check=False, env=_env(), capture_output=True, text=True, timeout=120)
    assert broken.stdout.strip() == str(EXIT_BROKEN_PIPE) and broken.stderr == ""
    closed = subprocess.run(["bash", "-c", f"{decompress} >&-"], check=False, env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert closed.returncode == 2
    assert closed.stderr == "codec decompress: error: standard output is closed; give an output file instead of -\n"


def test_output_checks_are_those_of_every_atomic_write(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(atomic.OutputError, match="is a directory"):
        atomic.write_json(tmp_path / "dir", {})
    atomic.write_json(tmp_path / "a.json", {"a": 1})
    with pytest.raises(atomic.OutputError, match="is the input"):
        atomic.check_output(tmp_path / "a.json", [tmp_path / "a.json"])


def test_a_folder_is_swept_for_stale_temporaries_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    swept = []
    real = atomic.remove_stale_temporaries
    monkeypatch.setattr(atomic, "remove_stale_temporaries", lambda folder: swept.append(folder) or real(folder))
    stale = tmp_path / f".b.json.{_dead_pid()}-xyz.tmp"
    stale.write_text("partial")
    for name in ("a.json", "b.json", "c.json"):
        atomic.write_json(tmp_path / name, {})
    assert swept == [tmp_path] and not stale.exists()
