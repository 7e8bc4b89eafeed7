"""Stand-ins for the user code the README's snippets name (``myapp.web:app`` ...).

The README snippet test puts this directory on PYTHONPATH and ``bin/`` on PATH, so every
snippet runs as written against small, real implementations of what it imports.
"""
