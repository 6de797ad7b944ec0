"""Event contracts on the bus: envelopes for clinical (and later operational/platform) events."""
