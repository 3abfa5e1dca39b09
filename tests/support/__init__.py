"""Helpers shared by the tests: a moto server, sample data, AWS-shaped exports."""
