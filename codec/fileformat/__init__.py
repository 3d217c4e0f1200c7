"""The ``.rvq`` file format: the bitstream (header and checksummed chunks), ANS entropy coding of the codes,
streaming resampling, and compressing and decompressing files one chunk at a time."""
