"""Phone recognition with pocketsphinx's US English acoustic model: a phone id every 10 ms, no transcript needed.

The ``pocketsphinx`` wheel (5.x, the ``semantic`` extra) ships the acoustic
model and a phonetic language model, ``en-us-phone.lm.bin``; decoding in
"allphone" mode with it yields the most likely phone sequence of an
utterance, each phone with its 10 ms frames::

    wav [T] at 16 kHz --PhoneRecognizer.recognize--> ids [ceil(T / 160)] in 0 .. len(PHONES) - 1

Ids index :data:`PHONES`: ``SIL`` then the 39 phones of the CMU dictionary.
pocketsphinx's noise fillers (``+NSN+`` noise, ``+SPN+`` unintelligible
speech) count as ``SIL``: they are no phone. 10 ms frames that no segment
covers (the last partial analysis window) are ``SIL`` too. Each file is
recognised on its own (the front end is reset between files), so its phones
do not depend on the files decoded before it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codec.errors import CodecError, SampleRateError

#: The rate of pocketsphinx's en-us acoustic model.
PHONE_RATE_HZ = 16000
#: pocketsphinx's frame: 10 ms, 160 samples at 16 kHz.
PHONE_HOP = 160
#: The class ids: silence first, then the CMU dictionary's 39 phones (stress removed), alphabetically.
PHONES = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
#: The id of silence (and of pocketsphinx's noise fillers).
SILENCE = PHONES.index("SIL")
#: Decoder settings of CMUSphinx's phoneme-recognition guide (cmusphinx.github.io/wiki/phonemerecognition):
#: a language weight of 2 instead of the word decoder's 6.5, and beams of 1e-20. On 38 utterances of the aligned
#: English set they agree with pocketsphinx's forced alignment on 56% of 20 ms frames, the defaults on 48%.
#: Changing them changes cached targets: bump ``train.semantic.CACHE_FORMAT``.
DECODER_SETTINGS = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}


class PhoneRecognizerError(CodecError):
    """The phone recogniser cannot run: pocketsphinx is missing, or its model has phones outside :data:`PHONES`."""


class PhoneRecognizer:
    """pocketsphinx in allphone mode with the wheel's phonetic language model.

    Raises:
        PhoneRecognizerError: If pocketsphinx is not installed.
    """

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError:
            raise PhoneRecognizerError(
                "phone recognition (semantic.teacher 'phones') needs pocketsphinx: pip install 'rvq-codec[semantic]'"
            ) from None
        model = get_model_path("en-us")
        self.decoder = Decoder(hmm=f"{model}/en-us", allphone=f"{model}/en-us-phone.lm.bin", lm=None,
                               samprate=PHONE_RATE_HZ, bestpath=False, loglevel="FATAL", **DECODER_SETTINGS)

    def segments(self, wav: Tensor, sample_rate: int) -> list[tuple[str, int, int]]:
        """pocketsphinx's phone segments of the mono signal ``wav`` [T]: ``(name, first frame, last frame)``.

        Frames are 10 ms; the last frame is included. Names are pocketsphinx's
        (fillers such as ``+SPN+`` included).

        Raises:
            SampleRateError: If ``sample_rate`` is not 16 kHz.
        """
        if sample_rate != PHONE_RATE_HZ:
            raise SampleRateError(
                f"the phone recogniser takes {PHONE_RATE_HZ} Hz audio, got {sample_rate} Hz: resample it first, "
                f"e.g. codec.audio.load(path, target_rate={PHONE_RATE_HZ}, mono=True)"
            )
        pcm = (wav.clamp(-1, 1) * 32767).to(torch.int16).numpy().tobytes()
        self.decoder.reinit_feat()  # the front end keeps noise estimates across utterances: each file on its own
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)  # one utterance: cepstral means over the whole file
        self.decoder.end_utt()
        return [(s.word, int(s.start_frame), int(s.end_frame)) for s in self.decoder.seg()]

    def recognize(self, wav: Tensor, sample_rate: int) -> Tensor:
        """The phone id (into :data:`PHONES`) of every 10 ms frame of ``wav`` [T]: ``[ceil(T / 160)]`` int64.

        Raises:
            SampleRateError: If ``sample_rate`` is not 16 kHz.
            PhoneRecognizerError: If pocketsphinx names a phone outside :data:`PHONES`.
        """
        segments = self.segments(wav, sample_rate)
        ids = torch.full((-(-wav.shape[-1] // PHONE_HOP),), SILENCE, dtype=torch.int64)
        for name, first, last in segments:
            ids[first : last + 1] = phone_id(name)
        return ids


def phone_id(name: str) -> int:
    """The id of pocketsphinx's phone ``name``: its index in :data:`PHONES`; fillers (``+NSN+``, ``+SPN+``) are SIL.

    Raises:
        PhoneRecognizerError: If ``name`` is neither a filler nor in :data:`PHONES` (another acoustic model's phones).
    """
    if name.startswith("+") and name.endswith("+"):
        return SILENCE
    if name not in PHONES:
        raise PhoneRecognizerError(f"pocketsphinx recognised the phone {name!r}, which is not in the US English set")
    return PHONES.index(name)
