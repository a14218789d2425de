"""HTTP layer: Flask blueprints over the library. Thin: parse, call the library, render."""
