"""Adoption: importers that bring an existing DVC project or MLflow store into mlcd."""
