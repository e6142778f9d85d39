"""Operator tools around the pipeline: doctor, tune, the chunks report, eval, the sample library
and the benchmark.

May import from every stage, run and query; nothing imports tools but the CLI.
"""
