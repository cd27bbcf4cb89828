"""Datasets stage: immutable, versioned training sets built from the approved labels."""
