"""The seed domain: reading a source of instructions and building the seed set from it."""
