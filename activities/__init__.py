"""activities plane."""
