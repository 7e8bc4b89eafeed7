class ConfigurationError(Exception):
    """Raised by the legacy daemon when its configuration is wrong."""
