"""torchmetrics-based metrics shared by the tasks (accumulated per epoch, synced under DDP)."""
