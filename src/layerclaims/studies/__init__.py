"""The package's own studies, each a package that declares itself as a :class:`layerclaims.study.Study` and is
found, like a third party's, through the entry-point group ``layerclaims.studies`` (``pyproject.toml``)."""
