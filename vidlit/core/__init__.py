"""Core pieces every layer may import: batch formats and tensor operations on segments."""
