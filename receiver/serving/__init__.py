"""Serving the app under gunicorn: arguments, the worker class, TLS and shutdown."""
