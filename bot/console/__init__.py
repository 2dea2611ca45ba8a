"""The operator console: a web UI at ``/console`` and its JSON API."""
