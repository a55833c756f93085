from .schema import SCHEMA, Report

__all__ = ["SCHEMA", "Report"]
