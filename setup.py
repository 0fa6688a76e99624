"""vccflow: Vonage Contact Center webhook notifications to analytics Parquet, with Apache Beam."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="vccflow",
    version="0.1.0",
    description="Sessionize Vonage Contact Center webhook events into Parquet tables (Apache Beam)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*", "schemas", "schemas.*"]),
    install_requires=[
        "apache-beam[gcp]>=2.77,<2.78",
        "pyarrow>=25,<26",
        "pandas>=3.1,<4",
        "great-expectations>=1.24,<1.25",
        "orjson>=3.10,<4",
        "msgspec>=0.22,<0.23",
        "aiohttp>=3.14,<4",
        "PyJWT>=2.15,<3",
        "google-cloud-pubsub>=2.44,<3",
        "uvloop>=0.23,<1; sys_platform != 'win32'",
    ],
    extras_require={
        "test": [
            "pytest>=9,<10",
            "ruff>=0.17,<0.18",
            "hypothesis>=6.100,<7",
            "matplotlib>=3.10,<4",
            "nbclient>=0.10,<0.12",
            "nbformat>=5.10,<6",
            "ipykernel>=7,<8",
            "duckdb>=2.0,<2.1",
        ],
        "bench": [
            "duckdb>=2.0,<2.1",
            "psutil>=7,<8",
        ],
        "notebooks": [
            "matplotlib>=3.10,<4",
            "nbclient>=0.10,<0.12",
            "nbformat>=5.10,<6",
            "ipykernel>=7,<8",
            "jupyterlab>=4.5,<5",
        ],
    },
    entry_points={"console_scripts": ["vccflow=pipelines.cli:console"]},
)
