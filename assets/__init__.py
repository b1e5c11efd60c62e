"""Icons (SVG and PNG), the style sheet and the desktop entry; read through importlib.resources."""
