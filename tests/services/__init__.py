"""Hermetic real services (brokers, databases) that tests and benchmarks start themselves."""
