"""The sign-feature store."""
