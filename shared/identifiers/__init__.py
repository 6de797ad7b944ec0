"""Identifier validation helpers (NHS number, ...)."""

from __future__ import annotations

from shared.identifiers.nhs_number import (
    InvalidNhsNumber,
    format_nhs_number,
    is_repeated_digit_nhs_number,
    is_valid_nhs_number,
    nhs_check_digit,
    normalise_nhs_number,
)

__all__ = [
    "InvalidNhsNumber",
    "format_nhs_number",
    "is_repeated_digit_nhs_number",
    "is_valid_nhs_number",
    "nhs_check_digit",
    "normalise_nhs_number",
]
