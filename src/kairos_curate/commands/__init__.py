"""The ``kairos-curate`` sub-commands, one module each (``register(subparsers)``; heavy imports in
the handlers so that ``--help`` stays instant)."""
