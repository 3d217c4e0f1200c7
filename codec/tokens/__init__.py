"""Tokens for language models: tokenizing folders into shards, the shard store and its dataset, and the
patterns (delay, flatten, special tokens) that lay codes out for a language model."""
