"""The OS shell: the event loop, processes, signals; it acts, it does not decide."""
