"""A minimal Django project for tests/integration/test_http_apps.py."""
