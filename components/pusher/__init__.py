"""TFX's Pusher, without duplicate versions."""
