"""edgevision.benchmarks: latency, memory and throughput measured where the model runs.

This folder is installed as `edgevision.benchmarks`: pyproject.toml's package-dir maps each top-level folder of the
repository to a subpackage of the one package `edgevision`, so code imports `edgevision.benchmarks.<module>`.
The project's own table-making scripts are in maintainer/, which is not installed.
"""
