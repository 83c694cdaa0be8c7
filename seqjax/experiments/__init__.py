"""The logic of the experiments, importable and testable; ``experiments/*.py`` are their flag-parsing entry points."""
