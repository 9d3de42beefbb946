"""Seed dialects: thin adapters that speak a source document's wire format over the one pipeline.

(Minimal package file from the API-tests branch; the seed 000/002/004 branch owns the full one.)
"""
