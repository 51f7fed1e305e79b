"""The engine's version, in a module of its own so any layer can read it without importing the
package's facade (engine/__init__.py sits on top of every layer)."""
__version__ = "0.1.0"
