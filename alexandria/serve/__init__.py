"""`alexandria serve`: the library in a browser and over a JSON API, read-only.

A stage after `query`: it imports query, store and the errors, never run, tools or cli. One
Searcher (the model loaded once, one client of the store's owner process) serves every request;
the manifest is read, never written, a fresh read-only connection per request.
"""
