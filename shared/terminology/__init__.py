"""Terminology: code systems, concept maps and value sets as versioned data (see the modules)."""
