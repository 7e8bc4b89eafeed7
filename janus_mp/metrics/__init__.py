"""Prometheus: the multiprocess store, the pure fold, the exposition and the HTTP endpoint."""
