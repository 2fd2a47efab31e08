"""Dataset readers (layout-validated before any compute) and evaluation transforms."""
