"""The package version (one place; setup.cfg repeats it for packaging, a test checks both agree)."""
__version__ = "0.1.0"
