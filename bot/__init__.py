"""The outer shell: the ASGI app, channel adapters, the pipeline, delivery."""
