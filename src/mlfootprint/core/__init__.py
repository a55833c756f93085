"""The bottom layer: errors, units, the one precision table, data-file loading and safe file writing.

Nothing here imports from any other part of mlfootprint.
"""
