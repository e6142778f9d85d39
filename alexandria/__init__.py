"""Alexandria: a Calibre library -> searchable Qdrant vector store, resumable and incremental."""

__version__ = "0.1.0"
