"""Credentials as architecture: the downstream registry, the credential provider port, TLS contexts with
rotation, certificate expiry alerts and per-call credential audit. Design: ``docs/credentials.md``.

Modules: :mod:`.registry` (the inventory, validated data), :mod:`.ports` (the provider port),
:mod:`.local` (embedded provider: files), :mod:`.pem` (parsing, in-memory ``SSLContext`` s),
:mod:`.broker` (per-downstream TLS with rotation, expiry and audit), :mod:`.expiry` (days remaining and
threshold alerts), :mod:`.audit` (the per-call audit port). The Key Vault adapter is
:mod:`shared.adapters.azure.keyvault`.
"""
