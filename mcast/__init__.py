"""Scribe-style multicast on the KBR API, protocol only (no I/O)."""
