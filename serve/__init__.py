"""AstraDup over HTTP on Ray Serve: see serve/app.py."""
