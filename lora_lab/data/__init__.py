"""Data: sources (one per format or dataset), splits, batching and the Lightning DataModule."""
