"""The three pipelines (short, detailed, qa). The engine finds them by name through engine/plugins.py;
reading one pipeline file tells the whole flow of that data type."""
