"""Scribe-style multicast on the KBR API (see the project's issue tracker for its status)."""
