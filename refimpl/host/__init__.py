"""The real kernel the notebook runs on, observed from Python (only Linux for now)."""
