"""workflows plane."""
