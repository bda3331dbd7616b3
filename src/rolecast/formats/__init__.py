"""Importers and exporters of other projects' character formats."""
