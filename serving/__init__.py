"""Serving: what the stock TF Serving 2.16 model server can load, and how clients talk to it."""
