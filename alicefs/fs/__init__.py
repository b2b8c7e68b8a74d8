"""The mounted filesystem: the in-memory namespace and the pyfuse3 operations on it."""
