"""edgevision.train: Keras models trained on an image folder or CIFAR-10 (Keras 3 alone, any backend).

This folder is installed as `edgevision.train`: pyproject.toml's package-dir maps each top-level folder of the
repository to a subpackage of the one package `edgevision`, so code imports `edgevision.train.<module>`.
"""
