"""Correlation IDs, structured logging without patient data, and OpenTelemetry set-up."""
