"""gateway plane."""
