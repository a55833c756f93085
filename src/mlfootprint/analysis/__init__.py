"""Analysis: count, memory, predict and footprint, as pure functions of a trace (and data) returning typed results.

Nothing here builds or reads a Report; the verbs (``mlfootprint.verbs``) assemble those.
"""
