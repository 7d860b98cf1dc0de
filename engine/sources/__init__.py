"""Inputs: scanning and ingesting a source folder."""
