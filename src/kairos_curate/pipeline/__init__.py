"""One module per DVC stage. Each exposes ``run(...)`` called by that stage's notebook.

The notebooks hold only parameters, calls into these functions, tables and figures; the
functions are what tests exercise.
"""
