"""Packaging for the clinical ALBERT on TFX project.

The pinned, tested environment is requirements.lock (see README). The ranges here say what each
package needs, so that `pip install .[kubeflow]` inside another image resolves to a working set.
"""

from setuptools import find_packages, setup

MODEL = [
    "keras>=3.12,<3.13",
    "numpy>=1.26,<2",
    "safetensors>=0.4",
]
PIPELINE = [
    "tfx==1.16.0",
    "tensorflow==2.16.2",
    "tensorflow-text==2.16.1",
    "tf-keras>=2.16,<2.17",
    "keras-hub==0.25.1",
    "tensorflow-serving-api==2.16.1",
    "grpcio-health-checking~=1.48.2",
    "apache-beam[gcp]==2.59.0",
    "sentencepiece",
    "fhir.resources>=8,<9",
]

setup(
    name="clinical-albert-tfx",
    version="0.1.0",
    description="ALBERT in Keras 3 inside a TFX pipeline for clinical NLP",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["albert_keras*", "components*", "pipeline*", "serving*"]),
    py_modules=["pipeline_runner"],
    package_data={"serving": ["*.txt"], "components": ["clinical_text/lexicons/*.txt"]},
    install_requires=MODEL + PIPELINE,
    extras_require={
        "kubeflow": ["kfp>=2.5,<2.6"],
        "airflow": ["apache-airflow==2.10.3"],
        "jax": ["jax[cpu]"],
        "test": ["jax[cpu]", "pytest", "pytest-xdist"],
        "lint": ["ruff"],
        "dev": ["jax[cpu]", "pytest", "pytest-xdist", "ruff", "uv"],
    },
    entry_points={
        "console_scripts": [
            "albert-pretrain=albert_keras.pretrain_cli:main",
            "albert-pretraining-records=albert_keras.pretraining_records:main",
        ]
    },
)
