"""Builds ``sample/fhir/``: the bundled MTSamples sample as a FHIR R4 export, in the shapes real exports
take, for the FHIR reader's tests and the README's FHIR command.

Each distinct note of ``sample/mtsamples_sample.csv`` becomes one note resource; its specialties are
the codings of its ``type`` (DiagnosticReport: ``code``), under the local code system below, so that
the default pipeline's MTSamples label names apply. MTSamples has no patients: each note is given one
of ``PATIENTS`` synthetic patients by a stable hash of its ``sample_id``, and one patient's notes are
spread over all the files, each file naming the patient its own way. No text here is invented: the
notes are MTSamples' (see the README's data section); the patients are numbers.

- ``Patient.ndjson.gz``: the patients (a bulk export's Patient file), each with a synthetic MRN.
- ``DocumentReference.ndjson.gz``: a bulk export; subjects as ``Patient/<id>``.
- ``transaction-bundle.json``: a transaction Bundle as a client posts it: entries identified by
  ``fullUrl`` (``urn:uuid:``) alone, no ``id``; subjects as ``urn:uuid:`` references to the Patient
  entries, and some by ``identifier`` (the patient's MRN) only.
- ``searchset-bundle.json.gz``: a server's search result: absolute, versioned subject references
  (``https://fhir.example.org/r4/Patient/<id>/_history/1``) and an OperationOutcome entry.
- ``DiagnosticReport.ndjson.gz``: reports whose ``presentedForm`` is the note; some repeat a
  DocumentReference's note (ingestion collapses them), some stand alone; and structured reports with
  no presentedForm (not notes: counted and skipped).
- ``encounters.json``: a top-level JSON array of resources: an Encounter holding its note as a
  contained DocumentReference, and an Observation.

Usage: python data/make_fhir_sample.py   (rewrites sample/fhir/ from sample/mtsamples_sample.csv)
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "sample" / "mtsamples_sample.csv"
OUT = HERE / "sample" / "fhir"
PATIENTS = 40
SPECIALTY_SYSTEM = "urn:clinical-albert:mtsamples-specialty"
MRN_SYSTEM = "urn:clinical-albert:synthetic-mrn"
SERVER = "https://fhir.example.org/r4"
_NAMESPACE = uuid.UUID("4f6d2a0e-93b1-4c55-9f0e-2f3c1b7a8d10")


def _hash(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "big")


def _uuid(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}/{key}"))


def _notes() -> list[tuple[str, str, list[str]]]:
    """(sample_id, text, specialties) per distinct note, in sample_id order."""
    csv.field_size_limit(sys.maxsize)
    texts: dict[str, str] = {}
    specialties: dict[str, set[str]] = {}
    with SOURCE.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["transcription"].strip():
                texts[row["sample_id"]] = row["transcription"]
                specialties.setdefault(row["sample_id"], set()).add(row["medical_specialty"].strip())
    return [(sid, texts[sid], sorted(specialties[sid])) for sid in sorted(texts, key=int)]


def _attachment(text: str) -> dict:
    return {"contentType": "text/plain; charset=utf-8", "data": base64.b64encode(text.encode()).decode()}


def _concept(specialties: list[str]) -> dict:
    return {"coding": [{"system": SPECIALTY_SYSTEM, "code": s, "display": s} for s in specialties]}


_CATEGORY = [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                          "code": "clinical-note", "display": "Clinical Note"}]}]  # fmt: skip


def _document(sample_id: str, text: str, specialties: list[str], subject: dict, with_id: bool = True) -> dict:
    resource = {"resourceType": "DocumentReference"}
    if with_id:
        resource["id"] = f"mts-{sample_id}"
    resource.update(
        {
            "status": "current",
            "type": _concept(specialties),
            "category": _CATEGORY,
            "subject": subject,
            "content": [{"attachment": _attachment(text)}],
        }
    )
    return resource


def _report(sample_id: str, text: str, specialties: list[str], patient: str) -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "id": f"report-{sample_id}",
        "status": "final",
        "code": _concept(specialties),
        "subject": {"reference": f"Patient/{patient}"},
        "presentedForm": [_attachment(text)],
    }


def _write_ndjson_gz(path: Path, resources: list[dict]) -> None:
    lines = "".join(json.dumps(resource, sort_keys=True) + "\n" for resource in resources)
    # mtime=0: the same sample gives the same bytes.
    path.write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))


def build() -> dict[str, int]:
    OUT.mkdir(parents=True, exist_ok=True)
    patients = [_uuid("Patient", str(k)) for k in range(PATIENTS)]
    mrns = {patient: f"SYN{k:05d}" for k, patient in enumerate(patients)}
    bulk, transaction, searchset, reports, encounters = [], [], [], [], []
    for sample_id, text, specialties in _notes():
        digest = _hash(sample_id)
        patient = patients[digest % PATIENTS]
        where = (digest >> 16) % 8
        if where == 0:
            by_identifier = (digest >> 24) % 3 == 0
            subject = (
                {"identifier": {"system": MRN_SYSTEM, "value": mrns[patient]}}
                if by_identifier
                else {"reference": f"urn:uuid:{patient}"}
            )
            document = _document(sample_id, text, specialties, subject, with_id=False)
            transaction.append(
                {
                    "fullUrl": f"urn:uuid:{_uuid('DocumentReference', sample_id)}",
                    "resource": document,
                    "request": {"method": "POST", "url": "DocumentReference"},
                }
            )
        elif where == 1:
            reference = {"reference": f"{SERVER}/Patient/{patient}/_history/1"}
            searchset.append(
                {
                    "fullUrl": f"{SERVER}/DocumentReference/mts-{sample_id}",
                    "resource": _document(sample_id, text, specialties, reference),
                    "search": {"mode": "match"},
                }
            )
        elif where == 2:
            # A report that repeats a bulk-exported document, and one that stands alone.
            reports.append(_report(sample_id, text, specialties, patient))
            if (digest >> 24) % 2 == 0:
                bulk.append(_document(sample_id, text, specialties, {"reference": f"Patient/{patient}"}))
        elif where == 3:
            encounter = {
                "resourceType": "Encounter",
                "id": f"enc-{sample_id}",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patient}"},
                "contained": [
                    {
                        **_document(sample_id, text, specialties, {"reference": f"Patient/{patient}"}),
                        "id": "note",
                    }
                ],
            }
            encounters.append(encounter)
        else:
            bulk.append(_document(sample_id, text, specialties, {"reference": f"Patient/{patient}"}))
    for k, patient in enumerate(patients[:5]):
        reports.append(
            {
                "resourceType": "DiagnosticReport",
                "id": f"lab-panel-{k}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
                "subject": {"reference": f"Patient/{patient}"},
            }
        )
    encounters.append(
        {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patients[0]}"},
        }
    )
    patient_entries = [
        {
            "fullUrl": f"urn:uuid:{patient}",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": MRN_SYSTEM, "value": mrns[patient]}],
            },
            "request": {"method": "PUT", "url": f"Patient?identifier={MRN_SYSTEM}|{mrns[patient]}"},
        }
        for patient in patients
    ]
    _write_ndjson_gz(
        OUT / "Patient.ndjson.gz",
        [
            {"resourceType": "Patient", "id": p, "identifier": [{"system": MRN_SYSTEM, "value": mrns[p]}]}
            for p in patients
        ],
    )
    _write_ndjson_gz(OUT / "DocumentReference.ndjson.gz", bulk)
    _write_ndjson_gz(OUT / "DiagnosticReport.ndjson.gz", reports)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": patient_entries + transaction}
    (OUT / "transaction-bundle.json").write_text(json.dumps(bundle, indent=1, sort_keys=True) + "\n")
    outcome = {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational"}],
        },
        "search": {"mode": "outcome"},
    }
    searchset_bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(searchset),
        "entry": [*searchset, outcome],
    }
    data = json.dumps(searchset_bundle, sort_keys=True).encode("utf-8")
    (OUT / "searchset-bundle.json.gz").write_bytes(gzip.compress(data, mtime=0))
    (OUT / "encounters.json").write_text(json.dumps(encounters, indent=1, sort_keys=True) + "\n")
    return {
        "Patient": PATIENTS * 2,
        "DocumentReference": len(bulk) + len(transaction) + len(searchset) + len(encounters) - 1,
        "DiagnosticReport": len(reports),
        "Encounter": len(encounters) - 1,
    }


if __name__ == "__main__":
    print(json.dumps(build(), sort_keys=True))
