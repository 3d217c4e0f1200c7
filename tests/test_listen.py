"""The listening page of ``codec eval``: files chosen over speakers, its HTML, and loading it in Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import soundfile as sf
from conftest import DATA_DIR

from codec.cli import main
from codec.network.presets import codec_tiny_config
from eval.listen import choose_files

SYSTEMS = ["reference", "codec-tiny {kbps:g} kbps", "latent", "opus 6 kbps"]
SPEAKERS = ["spk-a", "spk-b", "spk-c", "spk-b"]  # speakers given to tests/data's four clips: three speakers
BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


# ----- choosing files -----------------------------------------------------------------------------
def test_files_are_spread_over_speakers_then_over_the_list() -> None:
    files = [Path(f"{s}{i}.wav") for s in "abc" for i in range(4)]  # speakers a, b, c with 4 files each
    speakers = {f: f.name[0] for f in files}
    assert choose_files(files, 3, speakers) == [Path("a0.wav"), Path("b0.wav"), Path("c0.wav")]
    assert choose_files(files, 6, speakers) == [Path(n) for n in ("a0.wav", "a2.wav", "b0.wav", "b2.wav", "c0.wav",
                                                                  "c2.wav")]
    assert choose_files(files, 3) == [Path("a0.wav"), Path("b0.wav"), Path("c0.wav")]  # evenly over the list
    assert choose_files(files, 4) == [Path("a0.wav"), Path("a3.wav"), Path("b2.wav"), Path("c1.wav")]
    assert choose_files(files, 50, speakers) == files
    assert choose_files(files, 0, speakers) == []
    one_speaker = {f: "x" for f in files}
    assert choose_files(files, 2, one_speaker) == [Path("a0.wav"), Path("b2.wav")]


# ----- the page ---------------------------------------------------------------------------------
class _Tags(HTMLParser):
    """Collects the attributes of every tag of interest, and the text of table headers."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headers: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        self._in_th = self._in_th and tag != "th"

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self.headers.append(data.strip())

    def sources(self, tag: str) -> list[str]:
        return [str(attrs["src"]) for t, attrs in self.tags if t == tag]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``codec eval --out`` of preset:tiny at one bitrate and Opus 6 kbps on three clips of a manifest with speakers."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (the Opus baseline needs it)")
    tmp = tmp_path_factory.mktemp("listen")
    manifest = tmp / "clips.jsonl"
    clips = sorted(DATA_DIR.glob("*.wav"))
    assert len(clips) == len(SPEAKERS), f"{DATA_DIR} should hold {len(SPEAKERS)} clips"
    lines = [json.dumps({"path": str(p), "speaker": s}) for p, s in zip(clips, SPEAKERS)]
    manifest.write_text("\n".join(lines) + "\n")
    kbps = codec_tiny_config().bandwidths_kbps[0]
    argv = ["eval", "--model", "preset:tiny", "--data", str(manifest), "--kbps", f"{kbps:g}", "--baselines", "opus:6",
            "--metrics", "sisdr,mel", "--out", str(tmp / "out"), "--listen", "3"]
    assert main(argv) == 0
    return tmp / "out" / "index.html"


def test_page_has_a_player_and_a_spectrogram_per_file_and_system(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    kbps = codec_tiny_config().bandwidths_kbps[0]
    systems = [s.format(kbps=kbps) for s in SYSTEMS]
    audios, images = tags.sources("audio"), tags.sources("img")
    assert len(audios) == 3 * len(systems)  # one file of each of the three speakers
    assert len(images) == 1 + 3 * len(systems) and images[0] == "rate_distortion.png"  # the plot on top
    for src in audios + images:
        assert not re.match(r"^([a-z]+:|/)", src), f"{src} is not a relative path"
        assert (page.parent / src).is_file(), f"{src} is missing"
    lengths = {}
    for src in audios:
        info = sf.info(str(page.parent / src))
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        lengths.setdefault(src.split("/")[-1][:2], set()).add(info.frames)
    assert all(len(frames) == 1 for frames in lengths.values()), "every system of a file has the reference's length"
    assert all((page.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for src in images)
    for name in ("spk-a", "spk-b", "spk-c"):
        assert f"(speaker {name})" in text
    assert "latent (no quantizer)" in text and "without quantization" in text
    for column in ("0-0.5 kHz dB", "4-8 kHz dB", "measured kbps", "SI-SDR dB ↑", "spectrogram"):
        assert column in tags.headers
    assert "<script" not in text and not list(page.parent.rglob(".*.tmp"))


def test_no_html_writes_no_page(tmp_path: Path) -> None:
    kbps = codec_tiny_config().bandwidths_kbps[0]
    argv = ["eval", "--model", "preset:tiny", "--data", str(DATA_DIR),
            "--kbps", f"{kbps:g}", "--baselines", "", "--metrics", "sisdr", "--out", str(tmp_path), "--limit", "1",
            "--no-html"]
    assert main(argv) == 0
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "index.html").exists()


def test_a_higher_evaluation_rate_adds_bands_up_to_its_nyquist(tmp_path: Path) -> None:
    kbps = codec_tiny_config().bandwidths_kbps[0]
    argv = ["eval", "--model", "preset:tiny", "--data", str(DATA_DIR), "--kbps", f"{kbps:g}", "--baselines", "",
            "--metrics", "sisdr", "--out", str(tmp_path), "--limit", "1", "--eval-rate", "24000", "--listen", "1"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["eval_rate_hz"] == 24000 and report["bands"][-2:] == ["4-8 kHz", "8-12 kHz"]
    assert "8-12 kHz dB" in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert sf.info(str(next((tmp_path / "listen").glob("*reference.flac")))).samplerate == 24000


# ----- in a browser -------------------------------------------------------------------------------
CHECK_SCRIPT = """
<pre id="browser-check"></pre>
<script>
let polls = 0;
function finish() {
  const audio = [...document.querySelectorAll("audio")].map(a => ({src: a.getAttribute("src"),
    readyState: a.readyState, duration: a.duration, error: a.error && a.error.code}));
  const images = [...document.images].map(i => ({src: i.getAttribute("src"), naturalWidth: i.naturalWidth}));
  document.getElementById("browser-check").textContent = JSON.stringify({audio, images});
}
function poll() {
  const pending = [...document.querySelectorAll("audio")].some(a => a.readyState < 1 && !a.error);
  if (pending && ++polls < 200) setTimeout(poll, 50); else finish();
}
window.addEventListener("load", poll);
</script>
"""


def _browser() -> str | None:
    return next((path for name in BROWSER_CANDIDATES if (path := shutil.which(name))), None)


@pytest.mark.skipif(_browser() is None, reason="Chromium is not installed: 'sudo apt-get install chromium' "
                    "(make test installs it when run as root)")
def test_every_player_and_image_loads_in_chromium(page: Path) -> None:
    wrapper = page.parent / "_browser_check.html"  # the page plus a checking script, beside it for the same paths
    wrapper.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    cmd = [str(_browser()), "--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files",
           "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=10000", "--dump-dom",
           wrapper.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found and found.group(1), f"Chromium gave no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    assert len(result["audio"]) == 3 * len(SYSTEMS) and len(result["images"]) == 1 + 3 * len(SYSTEMS)
    for player in result["audio"]:
        assert player["error"] is None and player["readyState"] >= 1 and player["duration"] > 0, player
    for image in result["images"]:
        assert image["naturalWidth"] > 0, image

