"""The clinical ExampleGen: reads clinical corpora (CSV, MIMIC-III NOTEEVENTS, text folders, JSON Lines,
FHIR R4), normalizes and scrubs the text, splits by group and writes tf.Examples plus a rejects report."""
