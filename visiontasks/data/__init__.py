"""LightningDataModules, readers per format, albumentations presets and synthetic data."""
