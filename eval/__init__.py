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
- :mod:`eval.phonetic` and :mod:`eval.alignment`: phone purity, PNMI and a
  speaker probe of each codebook (``codec phonetic``).
- :mod:`eval.bench`: encode/decode speed, streaming latency and memory
  (``codec bench``); :mod:`eval.bench_bitstream`: the file format's measured
  bitrate, speed and memory (``codec bench-bitstream``).
- :mod:`eval.demo`: ``make demo``, the bundled model and Opus on real speech
  (``codec demo``).
- :mod:`eval.recipes`: quality against training CPU time (``codec recipes``).

The command-line arguments of each are defined in :mod:`codec.cli.evaluation`;
``python -m eval.X`` runs the same command.
"""
