"""Composition and the command line: config file + flags -> supervisor. Nothing imports app."""
