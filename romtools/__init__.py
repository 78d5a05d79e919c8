"""ROM formats and flashing: schemas, walker, lint, patch, build, EFI compression, disassembly."""
