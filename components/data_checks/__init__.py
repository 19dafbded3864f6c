"""Token-level data constraints for the transformed examples, and the gate that stops a run on
anomalies."""
