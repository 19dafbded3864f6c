"""The artifact type of the ingest report, so that it is tracked in ML Metadata next to the examples."""

from __future__ import annotations

from tfx.types.artifact import Artifact


class IngestReport(Artifact):
    """A folder holding rejects.jsonl (one line per rejected record) and summary.json (the counts)."""

    # "namespace.Name": the form the Kubeflow V2 compiler requires of custom artifact types.
    TYPE_NAME = "clinical_albert.ClinicalIngestReport"
