"""The read side: search and status over a Location.

Imports from the stages (sources, chunking, embedding, store); never from run or tools.
"""
