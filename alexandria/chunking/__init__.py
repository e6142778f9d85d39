"""Stage 2: chapters to token-aware chunks (structural, semantic, hierarchical).

Imports from alexandria.sources (the Chapter type) and nothing later in the pipeline; the semantic
chunker is handed its embedder, it never loads one.
"""
