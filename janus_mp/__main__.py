"""``python -m janus_mp``: the same command as ``janus-mp``."""

from janus_mp.app.cli import main

if __name__ == "__main__":
    main()
