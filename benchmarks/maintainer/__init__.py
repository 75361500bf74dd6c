"""The project's own maintenance scripts (bundling models, regenerating published tables).

They run from a source checkout only: pyproject.toml does not list this folder as a package, so it is not
in the wheel that users install.
"""
