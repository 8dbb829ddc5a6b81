"""Figures for each study (matplotlib, Agg backend, PNG)."""
