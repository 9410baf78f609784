"""Chord: identifiers, ring state, the node protocol, key-based routing and DHT storage."""
