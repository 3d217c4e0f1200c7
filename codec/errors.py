"""The exceptions of rvq-codec.

Every error that a user can cause (a bad tensor, a bad file, a wrong setting)
is raised as a :class:`CodecError` subclass whose message says what was wrong
and what to do about it. Library code never lets such a mistake surface as a
bare ``RuntimeError`` or ``KeyError`` from deep inside torch.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class of every error raised on purpose by rvq-codec."""


class InputError(CodecError, ValueError):
    """An input tensor or audio signal is unusable (rank, length, NaN, channels)."""


class SampleRateError(InputError):
    """Audio is at a sample rate that the model does not take."""


class BandwidthError(CodecError, ValueError):
    """A bandwidth (or codebook count) that the model does not support."""


class ConfigError(CodecError, ValueError):
    """A configuration file or dictionary has an unknown key or a wrong type."""


class ModelNotFoundError(CodecError, FileNotFoundError):
    """A pretrained model name or path cannot be found."""


class ModelFileError(CodecError, ValueError):
    """A model directory's weights are missing, unreadable, or do not fit its config."""


class OutputError(CodecError):
    """An output cannot be written where asked: the input itself, a directory, a device, a full disk."""


class FormatError(CodecError):
    """A compressed file is malformed: bad magic, version, checksum or truncation."""


class ModelMismatchError(FormatError):
    """A compressed file was written by a different model than the one loaded."""
