"""Pure policy: what the supervisor decides. Imports no OS, clock or randomness."""
