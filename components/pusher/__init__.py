"""TFX's Pusher, without duplicate versions, and with the model card beside the pushed model."""
