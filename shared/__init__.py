"""Serverless TIE core.

Pure, cloud-agnostic core of the Trust Integration Engine: ports, embedded defaults, canonical model and
wire formats. Modules here never import ``azure.*``; only ``shared.adapters.azure`` does (see
``tests/contract/test_import_contract.py``).
"""
