"""Stage 4: where the vectors live. The store interface and its two engines (Qdrant Edge, a Qdrant
server), the owner process that alone opens an Edge shard and its clients, the manifest, the run
lock, Location (one object for all of these), export and repair.

Imports from alexandria.sources, alexandria.chunking and alexandria.embedding; never from run.
"""
