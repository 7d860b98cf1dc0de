"""Training data out: the record format, export, validation and the dataset card."""
