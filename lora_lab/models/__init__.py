"""Models: backbones (what to load), classifiers (pooling + head), the LightningModule, metrics."""
