"""A stand-in for a downstream repository: it subclasses vidlit's head contract and nothing else."""
