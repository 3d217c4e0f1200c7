"""How phonetic each codebook's tokens are, and how much of the speaker they carry.

With semantic distillation, codebook 1 should carry content and codebooks 2-8
voice and acoustics. Two measurements tell:

- **Phones** (on phone-aligned English speech, see :mod:`eval.alignment`): each
  codec frame gets the phone at its centre, and each codebook's tokens are
  scored against these labels as HuBERT's units are (Hsu et al. 2021,
  arXiv 2106.07447, section IV-D), from the joint distribution ``p(y, z)`` of
  phone ``y`` and token ``z`` over all frames:

  - phone purity ``sum_z max_y p(y, z)``: how well the token predicts the phone;
  - cluster purity ``sum_y max_z p(y, z)``: how well the phone predicts the token;
  - phone-normalised mutual information ``PNMI = I(y; z) / H(y)``: the share of
    the phone's uncertainty that the token removes (0 to 1).

- **Speaker**: a linear probe (multinomial logistic regression) predicts the
  speaker of held-out utterances from each utterance's token histogram (the
  mean of its one-hot tokens), from codebook 1, from codebooks 2-8, and from
  all; the less codebook 1 knows of the speaker the better.

    codec phonetic --model preset:16khz --limit 100
    python -m eval.phonetic --model runs/plain/model --model runs/semantic/model
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from codec import sources
from codec.atomic import write_json
from codec.audio import load
from codec.errors import InputError
from codec.network.model import Codec
from codec.resolve import load_codec
from eval.alignment import align_manifest

#: Utterances longer than this are cut for the speaker probe (seconds).
PROBE_MAX_S = 10.0
#: Every n-th utterance of a speaker is held out to test the probe.
PROBE_TEST_EVERY = 4


@dataclass(frozen=True)
class PhoneScores:
    """Phone purity, cluster purity and PNMI of one token sequence against frame phone labels."""

    phone_purity: float
    cluster_purity: float
    pnmi: float


def phone_scores(phones: np.ndarray, tokens: np.ndarray) -> PhoneScores:
    """Scores of ``tokens`` [N] against ``phones`` [N] (any hashable labels), one pair per frame.

    Raises:
        InputError: If the sequences are empty or of different lengths.
    """
    if len(phones) != len(tokens) or len(phones) == 0:
        raise InputError(f"need as many phone labels as tokens, at least one: got {len(phones)} and {len(tokens)}")
    _, y = np.unique(phones, return_inverse=True)
    _, z = np.unique(tokens, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    p = joint / joint.sum()  # p(y, z)
    p_y, p_z = p.sum(1), p.sum(0)
    used = p > 0
    mutual = float((p[used] * np.log(p[used] / np.outer(p_y, p_z)[used])).sum())
    entropy = float(-(p_y * np.log(p_y)).sum())
    return PhoneScores(float(p.max(0).sum()), float(p.max(1).sum()), mutual / entropy if entropy > 0 else 0.0)


def encode_file(model: Codec, path: str, max_seconds: float | None = None) -> np.ndarray:
    """Codes ``[n_q, F]`` of an audio file (mixed to mono, resampled to the model's rate)."""
    wav, rate = load(path, target_rate=model.sample_rate, mono=True)  # [1, T]
    if max_seconds is not None:
        wav = wav[:, : round(max_seconds * rate)]
    with torch.no_grad():
        return model.encode(wav[None]).codes[0].numpy()


def phone_table(model: Codec, alignments: list, quiet: bool = False) -> dict[str, PhoneScores]:
    """Scores of each codebook (``"1"`` .. ``"n_q"``) and the mean of codebooks 2..n_q (``"2-n_q mean"``).

    Args:
        model: The codec.
        alignments: :class:`~eval.alignment.Alignment` of each file (failed ones are skipped).
        quiet: No progress bar.

    Raises:
        InputError: If no file has an alignment.
    """
    phones, codes = [], []
    for alignment in tqdm([a for a in alignments if not a.error], desc="encoding", unit="file", disable=quiet):
        file_codes = encode_file(model, alignment.path)  # [n_q, F]
        labels = alignment.frame_labels(file_codes.shape[1], model.frame_rate_hz)
        keep = [i for i, label in enumerate(labels) if label is not None]
        phones += [labels[i] for i in keep]
        codes.append(file_codes[:, keep])
    if not phones:
        raise InputError("no aligned file: every alignment failed (see the alignment cache for the reasons)")
    codes_all = np.concatenate(codes, axis=1)  # [n_q, N]
    labels_all = np.array(phones)
    table = {str(level + 1): phone_scores(labels_all, codes_all[level]) for level in range(codes_all.shape[0])}
    rest = [table[str(level)] for level in range(2, codes_all.shape[0] + 1)]
    if rest:
        mean = {k: float(np.mean([getattr(s, k) for s in rest])) for k in asdict(rest[0])}
        table[f"2-{codes_all.shape[0]} mean"] = PhoneScores(**mean)
    return table


def probe_accuracy(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, l2: float = 1e-2, iters: int = 200
) -> float:
    """Held-out accuracy of a multinomial logistic regression fitted by L-BFGS.

    Args:
        x_train: Features ``[N, d]``; standardised with their own mean and deviation.
        y_train: Class indices ``[N]``.
        x_test: Features ``[M, d]``.
        y_test: Class indices ``[M]``.
        l2: Weight of the squared-weight penalty.
        iters: L-BFGS iterations.
    """
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    weight = torch.zeros(x_train.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, y_train) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(((x_test @ weight + bias).argmax(1) == y_test).float().mean())


def token_histograms(codes: np.ndarray, levels: list[int], codebook_size: int) -> np.ndarray:
    """The mean one-hot token of each codebook in ``levels`` (0-based) over an utterance's codes [n_q, F]."""
    return np.concatenate([np.bincount(codes[lv], minlength=codebook_size) / codes.shape[1] for lv in levels])


def speaker_split(
    rows: list[dict], per_speaker: int, min_per_speaker: int = 2 * PROBE_TEST_EVERY
) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` rows: up to ``per_speaker`` per speaker chosen by a hash of the text (where rows have one)
    or the path, every 4th one held out.

    Speakers with fewer than ``min_per_speaker`` utterances are left out.
    """
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[row["speaker"]].append(row)
    train, test = [], []
    for speaker in sorted(by_speaker):
        speaker_rows = by_speaker[speaker]
        if len(speaker_rows) < min_per_speaker:
            continue
        chosen = sorted(speaker_rows, key=lambda r: hashlib.sha1(_split_key(r).encode()).hexdigest())[:per_speaker]
        for i, row in enumerate(chosen):
            (test if i % PROBE_TEST_EVERY == PROBE_TEST_EVERY - 1 else train).append(row)
    return train, test


def _split_key(row: dict) -> str:
    """What the split hashes: the text where rows have one (parallel sentences: every speaker keeps and holds out the
    same ones), else the path."""
    return str(row.get("text") or row["path"])


def speaker_probe(model: Codec, rows: list[dict], per_speaker: int, quiet: bool = False) -> dict[str, float]:
    """Held-out speaker accuracy from ``"codebook 1"``, ``"codebooks 2-n_q"``, ``"all codebooks"``, and ``"chance"``.

    ``chance`` is the share of the test set's most frequent speaker; ``held out`` the test set's size.

    Raises:
        InputError: If fewer than two speakers have enough utterances.
    """
    train, test = speaker_split(rows, per_speaker)
    speakers = sorted({r["speaker"] for r in train})
    if len(speakers) < 2:
        raise InputError("the speaker probe needs at least two speakers with 8 utterances each in --dev")
    n_q, size = model.config.n_q, model.config.codebook_size
    groups = {"codebook 1": [0], f"codebooks 2-{n_q}": list(range(1, n_q)), "all codebooks": list(range(n_q))}
    codes = {r["path"]: encode_file(model, r["path"], PROBE_MAX_S)
             for r in tqdm(train + test, desc="speaker probe", unit="file", disable=quiet)}
    labels = {split: torch.tensor([speakers.index(r["speaker"]) for r in part]) for split, part in
              (("train", train), ("test", test))}
    result = {}
    for name, levels in groups.items():
        if not levels:
            continue
        x = {split: torch.tensor(np.stack([token_histograms(codes[r["path"]], levels, size) for r in part]),
                                 dtype=torch.float32) for split, part in (("train", train), ("test", test))}
        result[name] = probe_accuracy(x["train"], labels["train"], x["test"], labels["test"])
    result["chance"] = float(torch.bincount(labels["test"]).max()) / len(test)
    result["held out"] = len(test)
    return result


def half_width(accuracy: float, count: int) -> float:
    """95% confidence half-width of an accuracy measured on ``count`` held-out items (normal approximation)."""
    return 1.96 * (accuracy * (1 - accuracy) / count) ** 0.5 if count else float("nan")


def read_manifest(path: Path, limit: int | None = None) -> list[dict]:
    """Rows of a JSONL manifest (the first ``limit``), each ``"path"`` taken from the manifest's folder.

    Raises:
        InputError: If the file is missing or a line is not a JSON object with a ``path``.
    """
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist; build the corpus with `make data`")
    return [entry.row | {"path": str(entry.path)} for entry in sources.read_manifest(path)][:limit]


def format_report(reports: dict[str, dict]) -> str:
    """The phone table and the speaker-probe table of each model, as plain text."""
    lines = ["phones: purity and PNMI of each codebook's tokens against the phone at each frame",
             f"{'model':<32} {'codebook':<10} {'phone purity':>12} {'cluster purity':>14} {'PNMI':>6}"]
    for model, report in reports.items():
        for name, s in report["phones"].items():
            lines.append(f"{model:<32} {name:<10} {s.phone_purity:>12.3f} {s.cluster_purity:>14.3f} {s.pnmi:>6.3f}")
    lines += ["", ("speaker probe: held-out accuracy of logistic regression on per-utterance token histograms, "
                   "with its 95% half-width")]
    names = [k for k in next(iter(reports.values()))["speaker"] if k not in ("chance", "held out")]
    lines.append(f"{'model':<32} " + " ".join(f"{n:>14}" for n in names) + f" {'chance':>7} {'held out':>8}")
    for model, report in reports.items():
        probe = report["speaker"]
        cells = [f"{probe[n]:.3f}±{half_width(probe[n], probe['held out']):.3f}" for n in names]
        lines.append(f"{model:<32} " + " ".join(f"{c:>14}" for c in cells)
                     + f" {probe['chance']:>7.3f} {probe['held out']:>8d}")
    return "\n".join(lines)


def compare(
    models: list[str],
    aligned: Path,
    dev: Path,
    alignments: Path | None = None,
    limit: int | None = None,
    per_speaker: int = 32,
    json_path: Path | None = None,
    quiet: bool = False,
) -> int:
    """Aligns (once), encodes, scores and prints the tables of ``models`` (``codec phonetic``).

    Args:
        models: What ``--model`` names, one or more (:func:`codec.resolve.load_codec`).
        aligned: JSONL manifest of English speech with ``text`` transcripts.
        dev: JSONL manifest with a ``speaker`` key, for the speaker probe.
        alignments: The phone alignment cache (default: beside ``aligned``, ending in ``.phones.jsonl``).
        limit: Use only the first ``limit`` files of ``aligned``; None for all.
        per_speaker: Utterances per speaker in the speaker probe.
        json_path: Also write the results to this JSON file.
        quiet: No progress bars.

    Returns:
        The exit status, 0.
    """
    sources.check_limit(limit)
    start = time.perf_counter()
    cache = alignments or aligned.with_suffix(".phones.jsonl")
    found = list(align_manifest(read_manifest(aligned, limit), cache, quiet).values())
    dev_entries = read_manifest(dev)
    reports = {}
    for spec in models:
        model = load_codec(spec)
        reports[spec] = {"phones": phone_table(model, found, quiet),
                         "speaker": speaker_probe(model, dev_entries, per_speaker, quiet)}
    print(format_report(reports))
    n_aligned = sum(not a.error for a in found)
    print(f"\n{n_aligned} of {len(found)} files aligned (cache: {cache}); {time.perf_counter() - start:.0f} s")
    if json_path:
        data = {m: {"phones": {k: asdict(s) for k, s in r["phones"].items()}, "speaker": r["speaker"]}
                for m, r in reports.items()}
        write_json(json_path, data)
    return 0


if __name__ == "__main__":  # python -m eval.phonetic: the same as `codec phonetic`
    from codec.cli import run_module

    run_module("phonetic")
