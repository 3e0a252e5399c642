"""workers plane."""
