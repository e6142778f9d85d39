"""The run: options, plan, the book workers, grouping, the device feeders, points assembly, the
writer thread and Ingest, which wires them together.

Imports from every stage (sources, chunking, embedding, store); never from query, tools or cli.
The public names are re-exported by `alexandria` itself (`from alexandria import ingest`).
"""
