"""Running pipelines: stages and pipelines, Ray actors and pools, the executor, plugins, the plan and the summary."""
