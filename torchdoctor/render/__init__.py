"""Renderers: show a report; they never decide severity."""
