"""End-to-end helpers: a real gunicorn process on 127.0.0.1 (see ``server.py``)."""
