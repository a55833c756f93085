"""The verbs: one function per verb, each running the analyses and assembling the Report.

This is the only layer that builds a Report, so the Python API (``mlfootprint.api``, re-exporting these) and
the command line (``mlfootprint.commands``, calling these) cannot disagree.
"""
