"""Rendering: terminal tables, JSON, CSV, HTML."""
