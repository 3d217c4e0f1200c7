"""Evaluation of rvq-codec: quality metrics, classical baselines, codebook statistics, speed.

- :mod:`eval.metrics`: ViSQOL (speech mode with the lattice mapping, audio
  mode), PESQ wideband, STOI, SI-SDR, multi-resolution mel distance, DNSMOS,
  and band energy ratios (decoded against reference, per octave band).
- :mod:`eval.baselines`: Opus, codec2, GSM and Speex round trips through ffmpeg,
  with the bitrate measured from the compressed bytes.
- :mod:`eval.codebooks`: usage perplexity, dead codes and entropy of each codebook.
- :mod:`eval.evaluate`: the evaluation loop behind ``codec eval``.
- :mod:`eval.report`: JSON, markdown table and rate-distortion plot.
- :mod:`eval.listen`: the listening page, index.html with audio players and spectrograms.
- :mod:`eval.bench`: encode/decode speed, streaming latency and memory
  (``python -m eval.bench``).
- :mod:`eval.demo`: ``make demo``, the bundled model and Opus on real speech
  (``python -m eval.demo``).
"""
