"""Custom TFX components (one folder each) and the module files that TFX loads."""
