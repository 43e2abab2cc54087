"""Feature extraction: decode clips, run the frozen encoders, bulk-populate a store."""
