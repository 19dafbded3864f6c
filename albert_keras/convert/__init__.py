"""Weight conversion between this library and other ALBERT implementations."""
