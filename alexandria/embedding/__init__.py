"""Stage 3: the model. Aliases and per-model facts, one cached sentence-transformers model per
(model, device, dtype) per process, packed batches, batch timing and device memory.

Imports from alexandria.sources and alexandria.chunking only.
"""
