"""Analytic models (River-like surface), physics models and remaining-useful-life estimators."""
