"""The one weight initializer ALBERT uses everywhere."""

import keras


def albert_initializer(stddev: float) -> keras.initializers.Initializer:
    """Truncated normal with the config's `initializer_range`, as google-research initializes."""
    return keras.initializers.TruncatedNormal(stddev=stddev)
