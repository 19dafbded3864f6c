"""The pipeline factory `create_pipeline(config)` and its configuration."""
