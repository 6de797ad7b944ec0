"""Developer tooling for Serverless TIE: the ``tie`` CLI and the local functions host (not deployed)."""
