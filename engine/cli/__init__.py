"""The `engine` command line: the composition root, the one place that imports pipelines and the review UI."""

from engine.cli.app import app

__all__ = ["app"]
