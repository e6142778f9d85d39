"""Stage 1: where books come from. The library (calibre metadata.db or a folder), share paths,
and one reader per format, each returning a sources.book.ExtractedBook.

Imports nothing of Alexandria but alexandria.errors.
"""
