"""MESH (Message Exchange for Social Care and Health) as a transport: inbound polling and outbound sending.

The protocol is NHS England's ``mesh-client``; this package adds the engine's durability rules (persist,
then acknowledge), routing by workflow id and delivery tracking. Design: ``docs/pds-and-mesh.md``.
"""
