"""Support code for the secretfs integration tests (harness and helper scripts)."""
