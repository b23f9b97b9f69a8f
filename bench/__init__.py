"""Benchmarks: each prints its figure and its ratio to a baseline measured in the same run.

``python -m bench`` runs all three (``make bench``); ``python -m bench register|projector|read``
runs one. They assert nothing: they measure, compare with the targets and say which were met.
"""
