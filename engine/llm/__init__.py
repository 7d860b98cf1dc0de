"""Model access: one OpenAI-compatible client, its limits, its cache and its request log."""
