"""Studies: the brief's experiments as data (a grid, the columns compared, verdict rules).

``load_study`` reads a built-in study (``fill``, ``coupling``, ``sessions``,
``stream-batch``: TOML files in ``builtin/``) or a user's file; ``run_study`` runs its
points through the sweep runner and judges them. ``pipefill study`` and
``pipefill.study`` are the entry points.
"""
