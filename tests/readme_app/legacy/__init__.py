"""``legacy.daemon``: a module with ``main()``, as older code is written."""
