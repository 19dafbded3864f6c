"""The pre-push check: the exported SavedModel loads in a fresh process and answers its warmup
requests with valid probabilities, using only ops the stock TF Serving 2.16 has."""
